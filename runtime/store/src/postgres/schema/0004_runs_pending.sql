-- Each tenant's pending runs (queued or running) are counted against its limit on every
-- enqueue: an index of them alone keeps that count cheap however long the history grows.
CREATE INDEX runs_pending ON runs (tenant) WHERE wakes IS NOT NULL;
-- Retention destroys dead runs' inputs: find them without reading the history.
CREATE INDEX runs_expiring ON runs (updated) WHERE status = 'dead' AND input IS NOT NULL;
