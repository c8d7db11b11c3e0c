-- Schedules: an installation's cron schedules. The record is sled's, as JSON (metadata only);
-- the input sealed with the tenant's data key. `next_tick` is when it fires next, NULL while
-- paused; a tick fires by a compare-and-set on it, in the transaction that queues its run.
CREATE TABLE schedules (
    id text COLLATE "C" PRIMARY KEY,
    tenant text COLLATE "C" NOT NULL,
    installation text COLLATE "C" NOT NULL,
    next_tick bigint,
    record bytea NOT NULL,
    input bytea NOT NULL
);
CREATE INDEX schedules_due ON schedules (next_tick, id) WHERE next_tick IS NOT NULL;
CREATE INDEX schedules_by_installation ON schedules (tenant, installation, id);
