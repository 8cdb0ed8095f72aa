//! The body of a server-sent event stream, and the answer type of the
//! router: a plain body for every route, a stream for the dashboard's
//! events (an enum, so the purchase answers pay no box).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::{Either, Full};
use hyper::body::{Body, Frame};
use hyper::Response;
use tokio::sync::{mpsc, watch};

use crate::shutdown::until_true;

/// What the router answers with.
pub type Answer = Response<Either<Full<Bytes>, EventStream>>;

/// Events queued per stream; a viewer that falls behind skips snapshots
/// (each one is whole), it never holds memory.
const QUEUE_LEN: usize = 2;

/// A stream of server-sent events fed from a watch channel: every new
/// value is sent once; the stream ends when `closed` turns true or the
/// client goes away (hyper drops the body, the feeding task sees it).
#[derive(Debug)]
pub struct EventStream {
    rx: mpsc::Receiver<Bytes>,
}

impl EventStream {
    pub fn new(mut events: watch::Receiver<Bytes>, mut closed: watch::Receiver<bool>) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE_LEN);
        tokio::spawn(async move {
            // A comment line first: the headers and a first byte go out
            // before the next tick.
            if tx.send(Bytes::from_static(b": seckill\n\n")).await.is_err() {
                return;
            }
            loop {
                tokio::select! {
                    changed = events.changed() => {
                        if changed.is_err() {
                            return;
                        }
                        let event = events.borrow_and_update().clone();
                        if event.is_empty() {
                            continue;
                        }
                        // A viewer whose queue is full skips this one
                        // (the next is whole); the loop never waits on it,
                        // so shutdown and a disconnect are seen at once.
                        if let Err(mpsc::error::TrySendError::Closed(_)) = tx.try_send(event) {
                            return;
                        }
                    }
                    _ = tx.closed() => return,
                    _ = until_true(&mut closed) => return,
                }
            }
        });
        EventStream { rx }
    }
}

impl Body for EventStream {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.rx
            .poll_recv(cx)
            .map(|event| event.map(|b| Ok(Frame::data(b))))
    }
}
