package e2ee

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// maxShort is the longest field lp can frame.
const maxShort = 0xFFFF

// errFieldTooLong reports a field that lp cannot frame.
var errFieldTooLong = errors.New("e2ee: field longer than 65535 bytes")

// appendLP appends lp(x): x's length as a big-endian uint16, then x.
func appendLP[T string | []byte](b []byte, x T) ([]byte, error) {
	if len(x) > maxShort {
		return nil, errFieldTooLong
	}
	b = binary.BigEndian.AppendUint16(b, uint16(len(x)))
	return append(b, x...), nil
}

// appendLP32 appends lp32(x): x's length as a big-endian uint32, then x.
// Callers bound x well below 4 GiB.
func appendLP32(b, x []byte) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(x)))
	return append(b, x...)
}

// checkAddress refuses an address lp cannot frame or with an empty part.
func checkAddress(role string, a Address) error {
	switch {
	case a.User == "":
		return fmt.Errorf("e2ee: empty %s user", role)
	case a.Device == "":
		return fmt.Errorf("e2ee: empty %s device", role)
	case len(a.User) > maxShort:
		return fmt.Errorf("e2ee: %s user longer than %d bytes", role, maxShort)
	case len(a.Device) > maxShort:
		return fmt.Errorf("e2ee: %s device longer than %d bytes", role, maxShort)
	}
	return nil
}

// appendAddresses appends lp(sender user) || lp(sender device) ||
// lp(recipient user) || lp(recipient device).
func appendAddresses(b []byte, sender, recipient Address) ([]byte, error) {
	var err error
	for _, f := range [...]string{sender.User, sender.Device, recipient.User, recipient.Device} {
		if b, err = appendLP(b, f); err != nil {
			return nil, err
		}
	}
	return b, nil
}

// reader consumes a byte string front to back. Once a read runs past the
// end, ok is false and every later read returns nil.
type reader struct {
	b  []byte
	ok bool
}

func newReader(b []byte) *reader { return &reader{b: b, ok: true} }

// take returns the next n bytes.
func (r *reader) take(n uint64) []byte {
	if !r.ok || n > uint64(len(r.b)) {
		r.ok = false
		return nil
	}
	x := r.b[:n:n]
	r.b = r.b[n:]
	return x
}

// lp returns the next lp-framed field.
func (r *reader) lp() []byte {
	n := r.take(2)
	if n == nil {
		return nil
	}
	return r.take(uint64(binary.BigEndian.Uint16(n)))
}

// lp32 returns the next lp32-framed field.
func (r *reader) lp32() []byte {
	n := r.take(4)
	if n == nil {
		return nil
	}
	return r.take(uint64(binary.BigEndian.Uint32(n)))
}
