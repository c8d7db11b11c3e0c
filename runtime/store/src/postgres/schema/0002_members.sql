-- The serving nodes: one row per live `airlock serve` process, marked on every heartbeat with
-- the database's clock and deleted when it stops or is not seen within the heartbeat's expiry.
-- The nodes divide the fairness caps among the rows (docs/deploy.md).
CREATE TABLE members (
    instance text COLLATE "C" PRIMARY KEY,
    seen timestamptz NOT NULL
);
