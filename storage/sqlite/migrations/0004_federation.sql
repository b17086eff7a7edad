-- 0004_federation: relaying envelopes between nodes (storage.Federation).
-- Times are unix microseconds, UTC; a NULL time is the zero time.

-- Inbox rows are envelopes (0) or delivery-failure notices (1), whose
-- ciphertext holds storage.EncodeFailure's bytes.
ALTER TABLE inbox ADD COLUMN kind INTEGER NOT NULL DEFAULT 0;

-- outbox queues envelopes for users of other nodes. AUTOINCREMENT: seq
-- never goes back, even when the queue empties.
CREATE TABLE outbox (
	seq                 INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
	destination         TEXT    NOT NULL,
	envelope_id         TEXT    NOT NULL,
	sender_localpart    TEXT    NOT NULL,
	sender_device       TEXT    NOT NULL,
	recipient_localpart TEXT    NOT NULL,
	recipient_device    TEXT    NOT NULL,
	server_time         INTEGER NOT NULL,
	expire_time         INTEGER NOT NULL,
	ciphertext          BLOB    NOT NULL,
	attempt             INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX outbox_destination ON outbox (destination, seq);

-- outbox_leases says which process works a destination's outbox.
CREATE TABLE outbox_leases (
	destination TEXT    NOT NULL PRIMARY KEY,
	owner       TEXT    NOT NULL,
	expires_at  INTEGER NOT NULL
);

-- dead_letters keeps envelopes given up for good, without ciphertext.
CREATE TABLE dead_letters (
	seq                 INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
	envelope_id         TEXT    NOT NULL,
	destination         TEXT    NOT NULL,
	sender_localpart    TEXT    NOT NULL,
	sender_device       TEXT    NOT NULL,
	recipient_localpart TEXT    NOT NULL,
	recipient_device    TEXT    NOT NULL,
	server_time         INTEGER NOT NULL,
	reason              TEXT    NOT NULL,
	time                INTEGER NOT NULL
);
CREATE INDEX dead_letters_destination ON dead_letters (destination, seq);
CREATE INDEX dead_letters_time ON dead_letters (time);

-- delivery_state is what this node remembers of its deliveries to each
-- destination.
CREATE TABLE delivery_state (
	destination   TEXT    NOT NULL PRIMARY KEY,
	last_success  INTEGER,
	last_error    TEXT    NOT NULL,
	last_error_at INTEGER,
	failures      INTEGER NOT NULL,
	next_attempt  INTEGER
);

-- federation_received records the envelopes other nodes delivered here,
-- so that a redelivery is recognised as a duplicate.
CREATE TABLE federation_received (
	origin      TEXT    NOT NULL,
	envelope_id TEXT    NOT NULL,
	received_at INTEGER NOT NULL,
	PRIMARY KEY (origin, envelope_id)
);
CREATE INDEX federation_received_at ON federation_received (received_at);

-- federation_transactions records the answer to each transaction another
-- node delivered, so that a retried transaction gets the same answer.
CREATE TABLE federation_transactions (
	origin         TEXT    NOT NULL,
	transaction_id TEXT    NOT NULL,
	statuses       TEXT    NOT NULL, -- a JSON array of storage.InboundStatus
	received_at    INTEGER NOT NULL,
	PRIMARY KEY (origin, transaction_id)
);
CREATE INDEX federation_transactions_received_at ON federation_transactions (received_at);

-- peer_signing_keys pins the Ed25519 signing keys of peers.
CREATE TABLE peer_signing_keys (
	node        TEXT    NOT NULL,
	key_id      TEXT    NOT NULL,
	public_key  BLOB    NOT NULL,
	valid_from  INTEGER NOT NULL,
	valid_until INTEGER NOT NULL,
	PRIMARY KEY (node, key_id)
);
