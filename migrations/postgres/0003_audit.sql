-- The audit trail's store sink: one row per decision record or task event,
-- in hash chains. Each writer (a replica) appends to its own chain, named
-- by `chain`; `seq` counts 1, 2, ... within it and the primary key stops
-- two writers from taking one place. `body` is the record's canonical JSON
-- line, `hash` its SHA-256 and `prev_hash` the hash of the row before; the
-- other columns repeat fields of the body so queries can filter in SQL
-- (`mandate audit verify --store` checks that they agree with it).
CREATE TABLE audit_records (
    chain TEXT NOT NULL,
    seq BIGINT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL,
    kind TEXT NOT NULL,
    time_ms BIGINT NOT NULL,
    task_id TEXT,
    root_task_id TEXT,
    subject TEXT,
    caller TEXT,
    decision TEXT,
    body TEXT NOT NULL,
    PRIMARY KEY (chain, seq)
);
CREATE INDEX audit_records_time ON audit_records (time_ms);
CREATE INDEX audit_records_task ON audit_records (task_id, time_ms);
CREATE INDEX audit_records_root ON audit_records (root_task_id, time_ms);
CREATE INDEX audit_records_subject ON audit_records (subject, time_ms);
CREATE INDEX audit_records_caller ON audit_records (caller, time_ms);
CREATE INDEX audit_records_chain_time ON audit_records (chain, time_ms);
-- The determining policies of each decision, for the policy id filter.
CREATE TABLE audit_policies (
    policy_id TEXT NOT NULL,
    chain TEXT NOT NULL,
    seq BIGINT NOT NULL,
    PRIMARY KEY (policy_id, chain, seq)
);
CREATE INDEX audit_policies_row ON audit_policies (chain, seq);
-- Where retention cut each chain: the last pruned row's seq and hash, so
-- the first row kept must link to it.
CREATE TABLE audit_chains (
    chain TEXT PRIMARY KEY,
    pruned_seq BIGINT NOT NULL,
    pruned_hash TEXT NOT NULL,
    pruned_at_ms BIGINT NOT NULL
);
