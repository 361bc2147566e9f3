-- Catalog (the seed's Catalog service).
CREATE TABLE products (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    currency TEXT NOT NULL,
    unit_price_minor BIGINT NOT NULL,
    work_steps TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE sell_windows (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    close_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);

-- The seed's product_sell_window: one listing per product in a window.
CREATE TABLE product_sell_windows (
    sell_window_id TEXT NOT NULL REFERENCES sell_windows(id),
    product_id TEXT NOT NULL REFERENCES products(id),
    min_qty BIGINT NOT NULL,
    max_qty BIGINT NOT NULL,
    payment_window_ms BIGINT NOT NULL,
    per_customer_limit BIGINT,
    min_paid_policy TEXT NOT NULL,
    workflow_id TEXT NOT NULL,
    phase TEXT NOT NULL,
    PRIMARY KEY (sell_window_id, product_id),
    CHECK (min_qty >= 1 AND min_qty <= max_qty)
);

-- Order's quota projection. The CHECK is the database's own refusal to oversell.
CREATE TABLE sell_window_quota (
    sell_window_id TEXT NOT NULL,
    product_id TEXT NOT NULL,
    min_qty BIGINT NOT NULL,
    max_qty BIGINT NOT NULL,
    sold_qty BIGINT NOT NULL,
    status TEXT NOT NULL,
    PRIMARY KEY (sell_window_id, product_id),
    CHECK (sold_qty >= 0 AND sold_qty <= max_qty)
);

-- The Aggregator's counter.
CREATE TABLE counters (
    sell_window_id TEXT NOT NULL,
    product_id TEXT NOT NULL,
    threshold_qty BIGINT NOT NULL,
    reserved_qty BIGINT NOT NULL,
    paid_qty BIGINT NOT NULL,
    status TEXT NOT NULL,
    reached_at BIGINT,
    final_paid_qty BIGINT,
    PRIMARY KEY (sell_window_id, product_id),
    CHECK (reserved_qty >= 0 AND paid_qty >= 0)
);

-- Planning's batch.
CREATE TABLE batches (
    id TEXT PRIMARY KEY,
    sell_window_id TEXT NOT NULL,
    product_id TEXT NOT NULL,
    status TEXT NOT NULL,
    target_qty BIGINT,
    confirmed_at BIGINT,
    UNIQUE (sell_window_id, product_id)
);

CREATE TABLE orders (
    id TEXT PRIMARY KEY,
    sell_window_id TEXT NOT NULL,
    product_id TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    qty BIGINT NOT NULL,
    currency TEXT NOT NULL,
    amount_minor BIGINT NOT NULL,
    status TEXT NOT NULL,
    payment_due_at BIGINT,
    payment_failed_count BIGINT NOT NULL DEFAULT 0,
    last_payment_error TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    CHECK (qty > 0)
);
CREATE INDEX orders_by_listing ON orders (sell_window_id, product_id);
CREATE INDEX orders_by_customer ON orders (customer_id, created_at);

CREATE TABLE payments (
    id TEXT PRIMARY KEY,
    order_id TEXT NOT NULL REFERENCES orders(id),
    sell_window_id TEXT NOT NULL,
    product_id TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    attempt BIGINT NOT NULL,
    currency TEXT NOT NULL,
    amount_minor BIGINT NOT NULL,
    status TEXT NOT NULL,
    provider TEXT NOT NULL,
    pay_url TEXT NOT NULL,
    expire_at BIGINT NOT NULL,
    last_error TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX payments_by_order ON payments (order_id);

-- Provider callbacks already verified, by the provider's event id (replays change nothing).
CREATE TABLE payment_callbacks (
    event_id TEXT PRIMARY KEY,
    payment_id TEXT NOT NULL,
    outcome TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    signalled_at BIGINT
);

CREATE TABLE notifications (
    id TEXT PRIMARY KEY,
    recipient_kind TEXT NOT NULL,
    recipient_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    sell_window_id TEXT,
    product_id TEXT,
    order_id TEXT,
    message TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    delivered_at BIGINT
);
CREATE INDEX notifications_by_recipient ON notifications (recipient_kind, recipient_id, created_at);

-- Production's work order and steps.
CREATE TABLE work_orders (
    id TEXT PRIMARY KEY,
    batch_id TEXT NOT NULL UNIQUE,
    sell_window_id TEXT NOT NULL,
    product_id TEXT NOT NULL,
    product_qty BIGINT NOT NULL,
    status TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    completed_at BIGINT
);

CREATE TABLE work_steps (
    id TEXT PRIMARY KEY,
    work_order_id TEXT NOT NULL REFERENCES work_orders(id),
    position BIGINT NOT NULL,
    name TEXT NOT NULL,
    status TEXT NOT NULL,
    completed_at BIGINT
);

CREATE TABLE shipments (
    id TEXT PRIMARY KEY,
    order_id TEXT NOT NULL UNIQUE REFERENCES orders(id),
    customer_id TEXT NOT NULL,
    sell_window_id TEXT NOT NULL,
    product_id TEXT NOT NULL,
    qty BIGINT NOT NULL,
    pickup_info TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

-- ReserveOrder's idempotency keys with the first answer given.
CREATE TABLE idempotency_keys (
    customer_id TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    response TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (customer_id, idempotency_key)
);

-- The business event log, with the seed's event names. event_key makes every write idempotent.
CREATE TABLE events (
    seq BIGSERIAL PRIMARY KEY,
    event_key TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    sell_window_id TEXT,
    product_id TEXT,
    order_id TEXT,
    payload TEXT NOT NULL,
    occurred_at BIGINT NOT NULL
);
CREATE INDEX events_by_window ON events (sell_window_id, seq);
