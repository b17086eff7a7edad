package storage

import (
	"crypto/sha256"
	"encoding/binary"
	"time"
)

// AuditHash returns the hash that chains event seq to its predecessor:
// SHA-256 over the previous hash and the length-prefixed fields. Backends
// call it so both compute the same chain; VerifyAuditChain checks it.
func AuditHash(prev []byte, seq int64, r AuditRecord) []byte {
	h := sha256.New()
	var n [8]byte
	writeField := func(b []byte) {
		binary.BigEndian.PutUint64(n[:], uint64(len(b)))
		h.Write(n[:])
		h.Write(b)
	}
	writeField(prev)
	binary.BigEndian.PutUint64(n[:], uint64(seq))
	h.Write(n[:])
	writeField([]byte(r.Time.UTC().Truncate(time.Microsecond).Format(time.RFC3339Nano)))
	writeField([]byte(r.Actor))
	writeField([]byte(r.Action))
	writeField([]byte(r.Target))
	writeField([]byte(r.Detail))
	return h.Sum(nil)
}

// VerifyAuditChain checks that events, consecutive and starting after an
// event whose hash is prev (nil for the first), chain correctly. It returns
// the Seq of the first broken event, or 0 when the chain holds.
func VerifyAuditChain(prev []byte, events []AuditEvent) int64 {
	for _, e := range events {
		if string(e.PrevHash) != string(prev) || string(AuditHash(prev, e.Seq, e.AuditRecord)) != string(e.Hash) {
			return e.Seq
		}
		prev = e.Hash
	}
	return 0
}
