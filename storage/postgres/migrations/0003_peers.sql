-- 0003_peers: the federation peer list. Federation is closed: only a
-- listed, unblocked peer may deliver to or receive from this node. Names
-- use the "C" collation so that keyset pagination is bytewise.
CREATE TABLE peers (
    name       text COLLATE "C" PRIMARY KEY,
    address    text NOT NULL,
    ca_bundle  bytea NOT NULL, -- PEM
    blocked    boolean NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);
