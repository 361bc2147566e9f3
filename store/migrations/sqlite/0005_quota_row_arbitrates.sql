-- The quota row arbitrates reservations (the API's reserve transaction), and the listing's
-- workflow has one shape: what the earlier shapes needed goes.
DROP TABLE handover_parts;
ALTER TABLE product_sell_windows DROP COLUMN workflow_type;
ALTER TABLE orders DROP COLUMN voided_at;
