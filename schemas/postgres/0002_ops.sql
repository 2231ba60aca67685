-- Veritrail on PostgreSQL, schema version 2: operational state beside the log.
--
-- Rows a background task keeps for itself (webhook delivery cursors and recent
-- attempts): not projections (reindex neither clears nor rebuilds them), never in an
-- entry, nothing personal.
CREATE TABLE veritrail_ops (
    k bytea PRIMARY KEY,
    v bytea NOT NULL
);

-- Leases: one node at a time holds a background duty (webhook delivery) until `until`
-- (unix microseconds); the row is locked (SELECT ... FOR UPDATE) to take or renew it.
CREATE TABLE veritrail_lease (
    name   text PRIMARY KEY,
    holder text NOT NULL,
    until  bigint NOT NULL
);
