-- 0004_federation: relaying envelopes between nodes. The outbox of
-- envelopes for other nodes with the lease that lets one process at a time
-- work a destination, dead letters, each destination's delivery state, the
-- record of what other nodes delivered here (deduplication and transaction
-- replay), the signing keys pinned per peer, and delivery-failure notices
-- in the inbox. Names and ids use the "C" collation, as in 0001.

-- seq orders the outbox. It is taken from a sequence when the row is
-- inserted, which is commit order for one writer; see insertOutbox for
-- several.
CREATE TABLE outbox (
    seq                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    destination         text COLLATE "C" NOT NULL,
    envelope_id         text NOT NULL,
    sender_localpart    text COLLATE "C" NOT NULL,
    sender_device       text COLLATE "C" NOT NULL,
    recipient_localpart text COLLATE "C" NOT NULL,
    recipient_device    text COLLATE "C" NOT NULL,
    server_time         timestamptz NOT NULL,
    expire_time         timestamptz NOT NULL,
    ciphertext          bytea NOT NULL,
    attempt             integer NOT NULL DEFAULT 0
);

CREATE INDEX outbox_destination_seq ON outbox (destination, seq);

-- A lease is held by owner until expires_at; an expired row is free.
CREATE TABLE outbox_leases (
    destination text COLLATE "C" PRIMARY KEY,
    owner       text NOT NULL,
    expires_at  timestamptz NOT NULL
);

-- Envelopes given up for good, without their ciphertext.
CREATE TABLE dead_letters (
    seq                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    destination         text COLLATE "C" NOT NULL,
    envelope_id         text NOT NULL,
    sender_localpart    text COLLATE "C" NOT NULL,
    sender_device       text COLLATE "C" NOT NULL,
    recipient_localpart text COLLATE "C" NOT NULL,
    recipient_device    text COLLATE "C" NOT NULL,
    server_time         timestamptz NOT NULL,
    reason              text NOT NULL,
    given_up_at         timestamptz NOT NULL
);

CREATE INDEX dead_letters_destination_seq ON dead_letters (destination, seq);
CREATE INDEX dead_letters_given_up_at ON dead_letters (given_up_at);

-- A NULL time stands for the zero time.
CREATE TABLE delivery_state (
    destination   text COLLATE "C" PRIMARY KEY,
    last_success  timestamptz,
    last_error    text NOT NULL,
    last_error_at timestamptz,
    failures      integer NOT NULL,
    next_attempt  timestamptz
);

-- The envelopes other nodes delivered here and this node accepted.
CREATE TABLE federation_received (
    origin      text COLLATE "C" NOT NULL,
    envelope_id text COLLATE "C" NOT NULL,
    received_at timestamptz NOT NULL,
    PRIMARY KEY (origin, envelope_id)
);

CREATE INDEX federation_received_received_at ON federation_received (received_at);

-- The answer given to each transaction another node delivered, one status
-- (storage.InboundStatus) per envelope. The id is the origin's string,
-- kept as bytes.
CREATE TABLE federation_transactions (
    origin         text COLLATE "C" NOT NULL,
    transaction_id bytea NOT NULL,
    statuses       smallint[] NOT NULL,
    received_at    timestamptz NOT NULL,
    PRIMARY KEY (origin, transaction_id)
);

CREATE INDEX federation_transactions_received_at ON federation_transactions (received_at);

CREATE TABLE peer_signing_keys (
    node        text COLLATE "C" NOT NULL,
    key_id      text COLLATE "C" NOT NULL,
    public_key  bytea NOT NULL,
    valid_from  timestamptz NOT NULL,
    valid_until timestamptz NOT NULL,
    PRIMARY KEY (node, key_id)
);

-- storage.KindEnvelope (0) or storage.KindDeliveryFailure (1): a notice
-- keeps storage.EncodeFailure's bytes in ciphertext and empty senders.
ALTER TABLE inbox ADD COLUMN kind smallint NOT NULL DEFAULT 0;
