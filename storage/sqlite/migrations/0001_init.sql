-- Valise SQLite schema, version 1. Times are unix microseconds, UTC.

CREATE TABLE users (
	localpart     TEXT    NOT NULL PRIMARY KEY,
	password_hash TEXT    NOT NULL,
	active        INTEGER NOT NULL,
	created_at    INTEGER NOT NULL,
	updated_at    INTEGER NOT NULL
);

CREATE TABLE devices (
	user_localpart TEXT    NOT NULL REFERENCES users (localpart) ON DELETE CASCADE,
	device_id      TEXT    NOT NULL,
	display_name   TEXT    NOT NULL,
	created_at     INTEGER NOT NULL,
	token_hash     BLOB    NOT NULL UNIQUE,
	identity_key   BLOB,              -- NULL until the device publishes keys
	spk_id         INTEGER,
	spk_public     BLOB,
	spk_signature  BLOB,
	next_cursor    INTEGER NOT NULL DEFAULT 1, -- the cursor of the next envelope
	PRIMARY KEY (user_localpart, device_id)
);

-- one_time_keys is the stock of unclaimed one-time prekeys.
CREATE TABLE one_time_keys (
	user_localpart TEXT    NOT NULL,
	device_id      TEXT    NOT NULL,
	key_id         INTEGER NOT NULL,
	public_key     BLOB    NOT NULL,
	signature      BLOB    NOT NULL,
	PRIMARY KEY (user_localpart, device_id, key_id),
	FOREIGN KEY (user_localpart, device_id) REFERENCES devices (user_localpart, device_id) ON DELETE CASCADE
);

-- one_time_key_ids holds every one-time key id a device ever published,
-- claimed or not, so that an id is never reused.
CREATE TABLE one_time_key_ids (
	user_localpart TEXT    NOT NULL,
	device_id      TEXT    NOT NULL,
	key_id         INTEGER NOT NULL,
	PRIMARY KEY (user_localpart, device_id, key_id),
	FOREIGN KEY (user_localpart, device_id) REFERENCES devices (user_localpart, device_id) ON DELETE CASCADE
) WITHOUT ROWID;

CREATE TABLE inbox (
	user_localpart   TEXT    NOT NULL,
	device_id        TEXT    NOT NULL,
	cursor           INTEGER NOT NULL,
	envelope_id      TEXT    NOT NULL,
	sender_localpart TEXT    NOT NULL,
	sender_node      TEXT    NOT NULL,
	sender_device    TEXT    NOT NULL,
	server_time      INTEGER NOT NULL,
	ciphertext       BLOB    NOT NULL,
	PRIMARY KEY (user_localpart, device_id, cursor),
	FOREIGN KEY (user_localpart, device_id) REFERENCES devices (user_localpart, device_id) ON DELETE CASCADE
);

-- idempotency remembers the envelope ids of each send by its key.
CREATE TABLE idempotency (
	sender_localpart TEXT    NOT NULL,
	sender_node      TEXT    NOT NULL,
	sender_device    TEXT    NOT NULL,
	idempotency_key  TEXT    NOT NULL,
	envelope_ids     TEXT    NOT NULL, -- a JSON array, in request order
	created_at       INTEGER NOT NULL,
	PRIMARY KEY (sender_localpart, sender_node, sender_device, idempotency_key)
);

CREATE TABLE audit (
	seq       INTEGER NOT NULL PRIMARY KEY,
	time      INTEGER NOT NULL,
	actor     TEXT    NOT NULL,
	action    TEXT    NOT NULL,
	target    TEXT    NOT NULL,
	detail    TEXT    NOT NULL,
	prev_hash BLOB,
	hash      BLOB    NOT NULL
);
