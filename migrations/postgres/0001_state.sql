-- Live state: one JSON document per row, plus the change log whose
-- primary key is the revision (a second writer of one revision conflicts).
CREATE TABLE change_log (
    revision BIGINT PRIMARY KEY,
    recorded_at BIGINT NOT NULL,
    body TEXT NOT NULL
);
CREATE TABLE tasks (
    id TEXT PRIMARY KEY,
    revision BIGINT NOT NULL,
    body TEXT NOT NULL
);
CREATE TABLE approvals (
    id TEXT PRIMARY KEY,
    revision BIGINT NOT NULL,
    body TEXT NOT NULL
);
CREATE TABLE registry (
    key TEXT PRIMARY KEY,
    revision BIGINT NOT NULL,
    body TEXT NOT NULL
);
