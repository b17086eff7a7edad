-- 0001_init: users, devices, keys, inboxes, idempotency records and the
-- audit log. Names and ids use the "C" collation so that ordering and
-- keyset pagination are bytewise, as in the SQLite backend.

CREATE TABLE users (
    localpart     text COLLATE "C" PRIMARY KEY,
    password_hash text NOT NULL,
    active        boolean NOT NULL,
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL
);

-- next_cursor is the cursor the device's next inbox envelope gets. Writers
-- lock the row, so cursors are consecutive in commit order.
CREATE TABLE devices (
    user_localpart    text COLLATE "C" NOT NULL REFERENCES users (localpart) ON DELETE CASCADE,
    device_id         text COLLATE "C" NOT NULL,
    display_name      text NOT NULL,
    created_at        timestamptz NOT NULL,
    token_hash        bytea NOT NULL UNIQUE,
    identity_key      bytea,
    signed_prekey_id  bigint,
    signed_prekey     bytea,
    signed_prekey_sig bytea,
    next_cursor       bigint NOT NULL DEFAULT 1,
    PRIMARY KEY (user_localpart, device_id)
);

-- A claimed one-time key keeps its row, without its bytes, so that its id
-- cannot be published again.
CREATE TABLE one_time_keys (
    user_localpart text COLLATE "C" NOT NULL,
    device_id      text COLLATE "C" NOT NULL,
    key_id         bigint NOT NULL,
    public_key     bytea,
    signature      bytea,
    claimed        boolean NOT NULL DEFAULT false,
    PRIMARY KEY (user_localpart, device_id, key_id),
    FOREIGN KEY (user_localpart, device_id) REFERENCES devices ON DELETE CASCADE
);

CREATE INDEX one_time_keys_unclaimed ON one_time_keys (user_localpart, device_id, key_id)
    WHERE NOT claimed;

CREATE TABLE inbox (
    user_localpart   text COLLATE "C" NOT NULL,
    device_id        text COLLATE "C" NOT NULL,
    seq              bigint NOT NULL,
    envelope_id      text NOT NULL,
    sender_localpart text NOT NULL,
    sender_node      text NOT NULL,
    sender_device    text NOT NULL,
    server_time      timestamptz NOT NULL,
    ciphertext       bytea NOT NULL,
    PRIMARY KEY (user_localpart, device_id, seq),
    FOREIGN KEY (user_localpart, device_id) REFERENCES devices ON DELETE CASCADE
);

-- One row per (sender, sender device, idempotency key): the ids of the
-- first send, returned to any replay. The key is the client's string, kept
-- as bytes.
CREATE TABLE idempotency_keys (
    sender_localpart text NOT NULL,
    sender_node      text NOT NULL,
    sender_device    text NOT NULL,
    idempotency_key  bytea NOT NULL,
    envelope_ids     text[] NOT NULL,
    created_at       timestamptz NOT NULL,
    PRIMARY KEY (sender_node, sender_localpart, sender_device, idempotency_key)
);

-- The record's strings are kept as bytes: they are hashed exactly as given,
-- and text cannot hold every Go string (NUL, invalid UTF-8).
CREATE TABLE audit_log (
    seq       bigint PRIMARY KEY CHECK (seq > 0),
    at        timestamptz NOT NULL,
    actor     bytea NOT NULL,
    action    bytea NOT NULL,
    target    bytea NOT NULL,
    detail    bytea NOT NULL,
    prev_hash bytea,
    hash      bytea NOT NULL
);

-- The single head row: the last seq and hash. Appenders lock it, so
-- sequence numbers have no gaps and the chain no forks.
CREATE TABLE audit_head (
    id   boolean PRIMARY KEY DEFAULT true CHECK (id),
    seq  bigint NOT NULL,
    hash bytea
);

INSERT INTO audit_head (seq, hash) VALUES (0, NULL);

-- The audit log is append-only.
CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only';
END;
$$;

CREATE TRIGGER audit_log_append_only
    BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();
