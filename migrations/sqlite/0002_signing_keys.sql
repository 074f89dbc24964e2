-- Signing keys shared by replicas; `body` holds the PKCS#8 document sealed
-- with a key that never enters the store.
CREATE TABLE signing_keys (
    kid TEXT PRIMARY KEY,
    revision BIGINT NOT NULL,
    body TEXT NOT NULL
);
