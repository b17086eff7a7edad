package client

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/valise-im/valise/client/e2ee"
)

// Message is one message of the history: received from another device,
// or sent by this one.
type Message struct {
	// ID is the sender's message id (32 hex digits); one message sent to
	// several devices has one id.
	ID string `json:"id"`
	// From and FromDevice are the sending user and device, as verified.
	From       string `json:"from"`
	FromDevice string `json:"from_device"`
	// To is the user the message was written to (the conversation), also
	// for the copy one of the sender's other devices receives.
	To string `json:"to"`
	// Time is the sender's clock when sealing, to the millisecond.
	Time time.Time `json:"time"`
	// Body is the text.
	Body []byte `json:"body"`
	// Received is when this device stored the message (for a message
	// this device sent: when the node accepted it).
	Received time.Time `json:"received"`
	// Envelope is the node's envelope id of a received message.
	Envelope string `json:"envelope,omitempty"`
}

// Peer returns the other party of the conversation from self's side: the
// recipient of a message self sent, else the sender.
func (m Message) Peer(self string) string {
	if m.From == self {
		return m.To
	}
	return m.From
}

// The client payload inside a sealed body: version byte, big-endian
// uint16 length of the recipient user, the recipient user, then the text.
const payloadVersion = 1

// MaxText bounds the text of one message. The exact bound is a few bytes
// lower: the payload also carries the recipient's name (MaxText - 3 -
// len(recipient)); Send reports ErrTooLarge past it.
const MaxText = e2ee.MaxBody

// maxTextFor is the longest text that fits one envelope to user to.
func maxTextFor(to string) int { return MaxText - 3 - len(to) }

// ErrTooLarge is returned by Send for a text that does not fit one
// envelope.
var ErrTooLarge = errors.New("client: message too large")

func encodePayload(to string, text []byte) ([]byte, error) {
	if len(text) > maxTextFor(to) {
		return nil, fmt.Errorf("%w: %d bytes, at most %d", ErrTooLarge, len(text), maxTextFor(to))
	}
	b := make([]byte, 0, 3+len(to)+len(text))
	b = append(b, payloadVersion)
	b = binary.BigEndian.AppendUint16(b, uint16(len(to)))
	b = append(b, to...)
	return append(b, text...), nil
}

func decodePayload(b []byte) (to string, text []byte, err error) {
	if len(b) < 3 || b[0] != payloadVersion {
		return "", nil, errors.New("unknown message payload")
	}
	n := int(binary.BigEndian.Uint16(b[1:3]))
	if len(b) < 3+n {
		return "", nil, errors.New("truncated message payload")
	}
	return string(b[3 : 3+n]), b[3+n:], nil
}

func messageID(id [16]byte) string { return hex.EncodeToString(id[:]) }

// appendHistory appends m to the history and syncs it. The caller holds
// the state directory's lock.
func (c *Client) appendHistory(m Message) error {
	line, err := historyLine(m)
	if err != nil {
		return err
	}
	return c.appendHistoryLines(line)
}

// historyLine is m as a line of the history.
func historyLine(m Message) ([]byte, error) {
	line, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("client: history: %w", err)
	}
	return append(line, '\n'), nil
}

// appendHistoryLines appends whole lines to the history and syncs it
// once. The caller holds the state directory's lock.
func (c *Client) appendHistoryLines(lines []byte) error {
	return appendSync(c.cfg.StateDir, historyFile, lines)
}

// History returns the stored messages in the order they were stored: all
// of them when user is "", else those of the conversation with user (the
// messages from user, and those to user from this user's devices).
func (c *Client) History(user string) ([]Message, error) {
	var want string
	if user != "" {
		u, err := c.parseUser(user)
		if err != nil {
			return nil, err
		}
		want = u.String()
	}
	f, err := os.Open(filepath.Join(c.cfg.StateDir, historyFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("client: history: %w", err)
	}
	defer f.Close()
	var out []Message
	err = eachLine(f, func(line []byte) {
		var m Message
		if json.Unmarshal(line, &m) != nil {
			return // a record cut by a crash
		}
		if want == "" || m.Peer(c.user.String()) == want {
			out = append(out, m)
		}
	})
	if err != nil {
		return nil, fmt.Errorf("client: history: %w", err)
	}
	return out, nil
}

// eachLine calls f with each non-empty line of r, without its newline.
// Lines may be long (a message body is up to 192 KiB).
func eachLine(r io.Reader, f func([]byte)) error {
	br := bufio.NewReaderSize(r, 64<<10)
	for {
		line, err := br.ReadBytes('\n')
		if line = bytes.TrimSpace(line); len(line) > 0 {
			f(line)
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// historyTailIDs returns the ids of the messages in the last lines of the
// history, at least minLines whole lines and at least minBytes bytes (or
// the whole history when shorter): a crash between storing messages and
// recording their ids as seen leaves them there.
func historyTailIDs(dir string, minLines int, minBytes int64) ([]string, error) {
	f, err := os.Open(filepath.Join(dir, historyFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	off, err := tailOffset(f, fi.Size(), minLines, minBytes)
	if err != nil {
		return nil, err
	}
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		return nil, err
	}
	var ids []string
	err = eachLine(f, func(line []byte) {
		var m struct {
			ID string `json:"id"`
		}
		if json.Unmarshal(line, &m) == nil && m.ID != "" {
			ids = append(ids, m.ID)
		}
	})
	return ids, err
}

// tailOffset returns where, in a file of size bytes, the last minLines
// whole lines start, moved back to at least minBytes from the end: just
// after a newline, or 0.
func tailOffset(f io.ReaderAt, size int64, minLines int, minBytes int64) (int64, error) {
	buf := make([]byte, 64<<10)
	// A last line cut by a crash (no newline at its end) counts as a
	// line too: one more newline is looked for than lines wanted.
	newlines := 0
	for end := size; end > 0; {
		start := max(end-int64(len(buf)), 0)
		chunk := buf[:end-start]
		if _, err := f.ReadAt(chunk, start); err != nil && !errors.Is(err, io.EOF) {
			return 0, err
		}
		for i := len(chunk) - 1; i >= 0; i-- {
			if chunk[i] != '\n' {
				continue
			}
			pos := start + int64(i) + 1
			if pos == size {
				continue // the newline ending the last line
			}
			newlines++
			if newlines > minLines && size-pos >= minBytes {
				return pos, nil
			}
		}
		end = start
	}
	return 0, nil
}
