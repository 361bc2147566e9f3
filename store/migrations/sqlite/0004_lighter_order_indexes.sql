-- Every reservation inserts an order, and every index on `orders` is written with it.
-- `orders_by_listing` is a prefix of `orders_by_listing_status`, which serves its queries.
DROP INDEX orders_by_listing;
-- Only orders asked to pay have a deadline: the deadline sweeps and the next deadline read
-- just those, so the index holds just those (an order reserved before confirm is not in it).
DROP INDEX orders_by_listing_due;
CREATE INDEX orders_by_listing_due ON orders (sell_window_id, product_id, status, payment_due_at)
    WHERE payment_due_at IS NOT NULL;
