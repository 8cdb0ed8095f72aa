//! Kafka: the order sink of the publish stage (`sink`, served by the
//! delivery-report thread in `poller`), the wire format (`message`), the
//! order-event producer the outbox task uses (`events`), and topics and
//! client settings (`admin`).

mod admin;
mod events;
mod history;
mod message;
mod poller;
mod sink;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};

pub use admin::{
    base_config, check_topic_name, create_topics, ensure_topics, KafkaSetupError, TopicSpec,
    Topics, ORDERS_TOPIC, ORDER_EVENTS_TOPIC,
};
pub use events::{event_producer, publish_round, EventProducer};
pub use history::{read_sale_history, Closed, SaleHistory};
pub use message::{encode_order, OrderMessage, SCHEMA_VERSION};
pub use sink::{KafkaOrderSink, SinkShared, SinkStats, FAILED_MAX};

/// What a producer error means to the caller. librdkafka's codes are
/// classified here, once; callers branch on the class, never on a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// The producer's local queue is full: poll, then send again.
    QueueFull,
    /// The broker may answer later (an outage, a leader election, a
    /// timeout): keep the message and try again.
    Retriable,
    /// Another try cannot succeed (bad configuration, authorization, a
    /// message the broker will never take): report it.
    Fatal,
}

/// Classifies a producer error.
pub fn classify(err: &KafkaError) -> ErrorClass {
    let Some(code) = err.rdkafka_error_code() else {
        // Errors without a code come from the client itself (a closed
        // producer, a configuration it refused).
        return match err {
            KafkaError::ClientConfig(..) | KafkaError::ClientCreation(_) => ErrorClass::Fatal,
            _ => ErrorClass::Retriable,
        };
    };
    match code {
        RDKafkaErrorCode::QueueFull => ErrorClass::QueueFull,
        RDKafkaErrorCode::Fatal
        | RDKafkaErrorCode::InvalidArgument
        | RDKafkaErrorCode::MessageSizeTooLarge
        | RDKafkaErrorCode::InvalidMessageSize
        | RDKafkaErrorCode::InvalidRecord
        | RDKafkaErrorCode::TopicAuthorizationFailed
        | RDKafkaErrorCode::ClusterAuthorizationFailed
        | RDKafkaErrorCode::TransactionalIdAuthorizationFailed
        | RDKafkaErrorCode::SaslAuthenticationFailed
        | RDKafkaErrorCode::Authentication
        | RDKafkaErrorCode::UnsupportedVersion
        | RDKafkaErrorCode::UnsupportedForMessageFormat
        | RDKafkaErrorCode::InvalidRequiredAcks
        | RDKafkaErrorCode::UnknownTopic
        | RDKafkaErrorCode::ProducerFenced
        | RDKafkaErrorCode::InvalidProducerEpoch => ErrorClass::Fatal,
        _ => ErrorClass::Retriable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::types::RDKafkaErrorCode as C;

    #[test]
    fn producer_errors_are_classified_once() {
        let produce = |c| KafkaError::MessageProduction(c);
        assert_eq!(classify(&produce(C::QueueFull)), ErrorClass::QueueFull);
        assert_eq!(
            classify(&produce(C::MessageTimedOut)),
            ErrorClass::Retriable
        );
        assert_eq!(classify(&produce(C::AllBrokersDown)), ErrorClass::Retriable);
        assert_eq!(
            classify(&produce(C::NotLeaderForPartition)),
            ErrorClass::Retriable
        );
        assert_eq!(
            classify(&produce(C::MessageSizeTooLarge)),
            ErrorClass::Fatal
        );
        assert_eq!(
            classify(&produce(C::TopicAuthorizationFailed)),
            ErrorClass::Fatal
        );
    }
}
