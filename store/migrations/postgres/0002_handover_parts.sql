-- A listing's orders handed over to its next run when they are too many to travel as the
-- continue-as-new input (the server's 2 MB payload limit). Kept until the next run has read them.
CREATE TABLE handover_parts (
    token TEXT NOT NULL,
    part INTEGER NOT NULL,
    sell_window_id TEXT NOT NULL,
    product_id TEXT NOT NULL,
    data TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (token, part)
);
