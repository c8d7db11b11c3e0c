-- Airlock's schema, version 1. Sealed values are bytea holding the same sealed records sled
-- keeps; nothing here is a plaintext secret, token, kv name or value, or config.
-- Text keys sort bytewise (COLLATE "C"), as sled's do, whatever the database's locale.

-- Small facts about the whole store: the master key check, the audit chain's id and coverage.
CREATE TABLE meta (
    key text COLLATE "C" PRIMARY KEY,
    value bytea NOT NULL
);

CREATE TABLE tenants (
    id text COLLATE "C" PRIMARY KEY,
    created bigint NOT NULL
);

-- Each tenant's data key, wrapped by the master key. Deleting the row (and vacuuming the
-- table) is the tenant's crypto-shredding.
CREATE TABLE data_keys (
    tenant text COLLATE "C" PRIMARY KEY,
    wrapped bytea NOT NULL
);

-- API keys for Airlock's own API: hashes only. `record` is the key record as JSON.
CREATE TABLE api_keys (
    id text COLLATE "C" PRIMARY KEY,
    tenant text COLLATE "C",
    record bytea NOT NULL
);
CREATE INDEX api_keys_tenant ON api_keys (tenant);

-- Signed bundles, once per content (hex SHA-256).
CREATE TABLE bundles (
    digest text COLLATE "C" PRIMARY KEY,
    bytes bytea NOT NULL
);

-- Installations: the record as JSON, its config sealed.
CREATE TABLE installations (
    tenant text COLLATE "C" NOT NULL,
    id text COLLATE "C" NOT NULL,
    record bytea NOT NULL,
    PRIMARY KEY (tenant, id)
);

-- Credentials: metadata and the sealed value, as JSON.
CREATE TABLE credentials (
    tenant text COLLATE "C" NOT NULL,
    installation text COLLATE "C" NOT NULL,
    name text COLLATE "C" NOT NULL,
    record bytea NOT NULL,
    PRIMARY KEY (tenant, installation, name)
);

-- Guests' kv: filed under a keyed hash of the name; name and value sealed.
CREATE TABLE kv (
    tenant text COLLATE "C" NOT NULL,
    installation text COLLATE "C" NOT NULL,
    idx bytea NOT NULL,
    record bytea NOT NULL,
    PRIMARY KEY (tenant, installation, idx)
);
CREATE TABLE kv_usage (
    tenant text COLLATE "C" NOT NULL,
    installation text COLLATE "C" NOT NULL,
    keys bigint NOT NULL,
    bytes bigint NOT NULL,
    PRIMARY KEY (tenant, installation)
);

-- The audit trail: records by sequence number (the primary key makes a second writer of one
-- number fail: one chain for the cluster), the index, in key order.
CREATE TABLE audit_records (
    seq bigint PRIMARY KEY,
    line bytea NOT NULL
);
CREATE TABLE audit_index (
    key bytea PRIMARY KEY,
    value bytea NOT NULL
);

-- Counters kept as numbers: the trust revision nodes poll, the audit checkpoints' coverage.
CREATE TABLE counters (
    name text COLLATE "C" PRIMARY KEY,
    value bigint NOT NULL
);

-- The publisher keys this cluster trusts, in the order they were added.
CREATE TABLE trusted_keys (
    position bigserial UNIQUE,
    id text COLLATE "C" PRIMARY KEY,
    record bytea NOT NULL
);

-- Webhooks, OAuth connections and consents.

-- Webhook endpoints: the record as JSON, its signing secrets sealed.
CREATE TABLE webhooks (
    id text COLLATE "C" PRIMARY KEY,
    tenant text COLLATE "C" NOT NULL,
    record bytea NOT NULL
);
CREATE INDEX webhooks_tenant ON webhooks (tenant);

-- Delivery ids received, each until `expires`: the primary key lets one writer of an id win.
-- They name only their endpoint, and go with it.
CREATE TABLE webhook_deliveries (
    endpoint text COLLATE "C" NOT NULL,
    delivery text COLLATE "C" NOT NULL,
    expires bigint NOT NULL,
    PRIMARY KEY (endpoint, delivery)
);
CREATE INDEX webhook_deliveries_expires ON webhook_deliveries (expires);

-- OAuth connections: the record as JSON, tokens, provider account and user sealed. A
-- per-user connection is filed under the user's keyed reference (`user_ref`, empty for the
-- tenant's own), never the user id. `revision` is the record's, bit for bit, so a refresh
-- replaces only the revision it read.
CREATE TABLE oauth_connections (
    tenant text COLLATE "C" NOT NULL,
    installation text COLLATE "C" NOT NULL,
    credential text COLLATE "C" NOT NULL,
    user_ref text COLLATE "C" NOT NULL,
    revision bigint NOT NULL,
    record bytea NOT NULL,
    PRIMARY KEY (tenant, installation, credential, user_ref)
);

-- Consents offered (by the SHA-256 of the start link's id) and under way (by the SHA-256 of
-- their state): the record as JSON, its user and verifier sealed. Taking one deletes it.
CREATE TABLE oauth_offers (
    id bytea PRIMARY KEY,
    tenant text COLLATE "C" NOT NULL,
    expires bigint NOT NULL,
    record bytea NOT NULL
);
CREATE INDEX oauth_offers_expires ON oauth_offers (expires);
CREATE TABLE oauth_pending (
    state bytea PRIMARY KEY,
    tenant text COLLATE "C" NOT NULL,
    expires bigint NOT NULL,
    record bytea NOT NULL
);
CREATE INDEX oauth_pending_expires ON oauth_pending (expires);
