-- Veritrail on PostgreSQL, schema version 1. Applied by `veritrail serve
-- --database-url ...` (and `veritrail migrate`) in one transaction, once.
--
-- Keys and values are the same bytes the embedded (sled) backend keeps; bytea
-- compares bytewise, so range reads return rows in the same order.

-- The log's head: one row, locked (SELECT ... FOR UPDATE) by the node that sequences
-- the next batch. NULL size: no log yet.
CREATE TABLE veritrail_head (
    id        smallint PRIMARY KEY CHECK (id = 1),
    size      bigint CHECK (size >= 0),
    root      bytea CHECK (octet_length(root) = 32),
    last_time bigint,
    last_leaf bytea CHECK (octet_length(last_leaf) = 32)
);
INSERT INTO veritrail_head (id) VALUES (1);

-- Entries: the exact bytes whose leaf hashes the tree commits to.
CREATE TABLE veritrail_entry (
    idx   bigint PRIMARY KEY CHECK (idx >= 0),
    bytes bytea NOT NULL
);

-- Complete-subtree hashes as tlog tiles (partial tiles are rewritten as they grow).
CREATE TABLE veritrail_tile (
    level  smallint NOT NULL,
    idx    bigint NOT NULL,
    hashes bytea NOT NULL,
    PRIMARY KEY (level, idx)
);

-- Every signed checkpoint (C2SP signed note), by tree size.
CREATE TABLE veritrail_checkpoint (
    size bigint PRIMARY KEY,
    note text NOT NULL
);

CREATE TABLE veritrail_meta (
    name  text PRIMARY KEY,
    value bytea NOT NULL
);

-- Projections: derived from entries, rebuilt by `veritrail reindex`.
CREATE TABLE veritrail_projection (
    k bytea PRIMARY KEY,
    v bytea NOT NULL
);

-- The vault: personal data beside the log, never in it (erasable).
CREATE TABLE veritrail_vault (
    k bytea PRIMARY KEY,
    v bytea NOT NULL
);
