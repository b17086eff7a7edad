-- 0003_peers: the federation peer list. Federation is closed: only a
-- listed, unblocked peer may deliver to or receive from this node.
-- Times are unix microseconds, UTC.
CREATE TABLE peers (
	name       TEXT    NOT NULL PRIMARY KEY,
	address    TEXT    NOT NULL,
	ca_bundle  BLOB    NOT NULL, -- PEM
	blocked    INTEGER NOT NULL,
	created_at INTEGER NOT NULL,
	updated_at INTEGER NOT NULL
);
