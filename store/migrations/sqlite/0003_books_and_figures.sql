-- The saga's books: when each payment attempt was charged and when it was refunded (each at
-- most once). Only a charged attempt is ever refunded.
ALTER TABLE payments ADD COLUMN charged_at BIGINT;
ALTER TABLE payments ADD COLUMN refunded_at BIGINT;
UPDATE payments SET charged_at = updated_at WHERE status IN ('SUCCEEDED', 'REFUNDED');
UPDATE payments SET refunded_at = updated_at WHERE status = 'REFUNDED';

-- The attempt that paid an order; a reservation written after its customer was told it
-- failed (voided, and revived by the customer's retry under the same key).
ALTER TABLE orders ADD COLUMN paid_by TEXT;
ALTER TABLE orders ADD COLUMN voided_at BIGINT;
-- Why the order left the quota (e.g. "cancelled by the customer").
ALTER TABLE orders ADD COLUMN closed_reason TEXT;
CREATE INDEX orders_by_listing_status ON orders (sell_window_id, product_id, status, id);
CREATE INDEX orders_by_listing_due ON orders (sell_window_id, product_id, status, payment_due_at);

-- From this time the listing takes no payment (closed or cancelled); later ones are refunded.
ALTER TABLE product_sell_windows ADD COLUMN closed_at BIGINT;
-- The workflow type running the listing (the first shape, or the current one).
ALTER TABLE product_sell_windows ADD COLUMN workflow_type TEXT NOT NULL DEFAULT 'SellWindowWorkflow';

-- What was noticed about a verified callback (e.g. an amount that is not the order's).
ALTER TABLE payment_callbacks ADD COLUMN note TEXT;

-- Moved on by every write of a listing's workflow (under the listing's lock): of two answers
-- the one with the higher version is the later state.
ALTER TABLE sell_window_quota ADD COLUMN version BIGINT NOT NULL DEFAULT 0;

-- Verified callbacks are the listing's inbox of payment outcomes: the API writes each one here
-- and pokes the listing's workflow, which applies what is waiting in batches (a flood of
-- callbacks is a few writes, not a signal each).
ALTER TABLE payment_callbacks ADD COLUMN order_id TEXT;
ALTER TABLE payment_callbacks ADD COLUMN sell_window_id TEXT;
ALTER TABLE payment_callbacks ADD COLUMN product_id TEXT;
ALTER TABLE payment_callbacks ADD COLUMN error TEXT;
ALTER TABLE payment_callbacks ADD COLUMN occurred_at BIGINT;
ALTER TABLE payment_callbacks ADD COLUMN applied_at BIGINT;
CREATE INDEX payment_callbacks_waiting ON payment_callbacks (sell_window_id, product_id, applied_at, received_at);

-- Lists are read a page at a time by keyset, in these orders.
CREATE INDEX orders_by_window_time ON orders (sell_window_id, created_at, id);
CREATE INDEX notifications_by_window_time ON notifications (sell_window_id, created_at, id);
CREATE INDEX notifications_by_time ON notifications (created_at, id);
CREATE INDEX sell_windows_by_close ON sell_windows (close_at, id);

-- Redelivery: each undelivered notification is claimed by one worker for a while (several
-- workers never deliver the same one at once), tried with growing pauses, and after its last
-- attempt marked dead (the admin sees it with its last error).
ALTER TABLE notifications ADD COLUMN delivery_attempts BIGINT NOT NULL DEFAULT 0;
ALTER TABLE notifications ADD COLUMN last_delivery_error TEXT;
ALTER TABLE notifications ADD COLUMN next_attempt_at BIGINT;
ALTER TABLE notifications ADD COLUMN claimed_until BIGINT;
ALTER TABLE notifications ADD COLUMN dead_at BIGINT;
CREATE INDEX notifications_undelivered ON notifications (delivered_at, dead_at, created_at);
