package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	"github.com/valise-im/valise/client"
)

// printer prints messages, as text or JSON lines.
type printer struct {
	w       io.Writer
	json    bool
	self    string // the device's user, to show the direction in history
	history bool   // show the recipient too
}

// print prints one message; it is the handler of Receive.
func (p printer) print(m client.Message) error {
	if p.json {
		line, err := json.Marshal(jsonMessage{
			ID: m.ID, From: m.From, Device: m.FromDevice, To: m.To, Time: m.Time.UTC(),
			Text: strings.ToValidUTF8(string(m.Body), "\uFFFD"), Received: m.Received.UTC(),
		})
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(p.w, "%s\n", line)
		return err
	}
	who := m.From
	if p.history || m.From == p.self {
		who = m.From + " → " + m.To
	}
	_, err := fmt.Fprintf(p.w, "%s  %s (%s): %s\n", m.Time.Local().Format("2006-01-02 15:04:05"), sanitize(who), sanitize(m.FromDevice), sanitize(string(m.Body)))
	return err
}

// sanitize makes text from others safe to print on a terminal: control
// characters (but newline and tab), invalid UTF-8 and the bidirectional
// overrides that can disguise text are shown escaped, so a message cannot
// move the cursor, change colours or rewrite what was printed.
func sanitize(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n <= 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case r == '\n' || r == '\t':
			b.WriteRune(r)
		case r < 0x20 || (r >= 0x7f && r <= 0x9f) || (r >= 0x202a && r <= 0x202e) || (r >= 0x2066 && r <= 0x2069):
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}
