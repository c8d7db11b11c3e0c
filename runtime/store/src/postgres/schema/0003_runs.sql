-- Runs: the durable work queue and its history. The record is sled's, as JSON (metadata
-- only); the input sealed with the tenant's data key, NULL once destroyed. `wakes` is when the
-- run can next be claimed (a queued run when due, a running run when its claim lapses), NULL
-- once it ended; workers claim with FOR UPDATE SKIP LOCKED.
CREATE TABLE runs (
    id text COLLATE "C" PRIMARY KEY,
    tenant text COLLATE "C" NOT NULL,
    installation text COLLATE "C" NOT NULL,
    status text NOT NULL,
    created bigint NOT NULL,
    updated bigint NOT NULL,
    wakes bigint,
    record bytea NOT NULL,
    input bytea
);
CREATE INDEX runs_wakes ON runs (wakes, id) WHERE wakes IS NOT NULL;
CREATE INDEX runs_by_tenant ON runs (tenant, created, id);
CREATE INDEX runs_by_installation ON runs (tenant, installation, created, id);
