-- MySQL / MariaDB. Binary collation: ids are case-sensitive, as the
-- daemon's are (a case-insensitive key would make `R1` and `r1` one).
-- The orders, one row per win (keyed by the deterministic order id), and
-- what happened to them. Written by seckill-orders; see docs/orders.md.

CREATE TABLE seckill_orders (
    order_id        VARCHAR(16)  PRIMARY KEY,
    request_id      VARCHAR(128) NOT NULL UNIQUE,
    sale_id         VARCHAR(64)  NOT NULL,
    item_id         VARCHAR(64)  NOT NULL,
    user_id         VARCHAR(128) NOT NULL,
    quantity        INTEGER      NOT NULL CHECK (quantity > 0),
    -- The price of one unit.
    price_cents     BIGINT       NOT NULL CHECK (price_cents >= 0),
    state           VARCHAR(16)  NOT NULL
        CHECK (state IN ('awaiting_payment', 'paid', 'cancelled', 'expired', 'failed')),
    -- Why a failed order failed ('backlog').
    reason          VARCHAR(32),
    -- When the daemon decided the win.
    created_ms      BIGINT       NOT NULL,
    -- When the row last changed.
    updated_ms      BIGINT       NOT NULL,
    -- Where the win's message was read (the original, through any retry).
    source_partition INTEGER     NOT NULL,
    source_offset   BIGINT       NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- A user's orders, newest first (GET /api/v1/users/{user}/orders).
CREATE INDEX seckill_orders_by_user ON seckill_orders (user_id, created_ms, order_id);
-- An item's orders (reconcile).
CREATE INDEX seckill_orders_by_item ON seckill_orders (sale_id, item_id);

-- Every order event received, once per (order, event).
CREATE TABLE seckill_order_events (
    order_id    VARCHAR(16) NOT NULL,
    event       VARCHAR(16) NOT NULL,
    reason      VARCHAR(32),
    at_ms       BIGINT      NOT NULL,
    received_ms BIGINT      NOT NULL,
    PRIMARY KEY (order_id, event)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- Events not applied yet: their order has no row yet (the order and its
-- events travel on different topics), or they were just received.
CREATE TABLE seckill_order_events_waiting (
    order_id    VARCHAR(16) NOT NULL,
    event       VARCHAR(16) NOT NULL,
    reason      VARCHAR(32),
    at_ms       BIGINT      NOT NULL,
    received_ms BIGINT      NOT NULL,
    PRIMARY KEY (order_id, event)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- The dead-letter queue as read back from seckill.orders.dlq: one entry per
-- original message (where it was first read), redriven by `dlq redrive`
-- and by the hourly redrive.
CREATE TABLE seckill_dlq (
    id               BIGINT       AUTO_INCREMENT PRIMARY KEY,
    source_topic     VARCHAR(255) NOT NULL,
    source_partition INTEGER      NOT NULL,
    source_offset    BIGINT       NOT NULL,
    msg_key          LONGBLOB,
    payload          LONGBLOB,
    error_kind       VARCHAR(32)  NOT NULL,
    error            TEXT         NOT NULL,
    attempts         INTEGER      NOT NULL,
    first_failed_ms  BIGINT       NOT NULL,
    last_failed_ms   BIGINT       NOT NULL,
    -- How many times it reached the dead-letter queue.
    parks            INTEGER      NOT NULL,
    -- 'parked' (waiting for a human or the next redrive) or 'redriven'.
    state            VARCHAR(16)  NOT NULL,
    redriven_ms      BIGINT,
    UNIQUE (source_topic, source_partition, source_offset)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
CREATE INDEX seckill_dlq_by_state ON seckill_dlq (state);
