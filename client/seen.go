package client

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// maxSeen bounds the message ids remembered, for memory only (about 90 MB
// at the bound). Ids are forgotten by age (see Client.seenHorizon); the
// bound is reached only by a flood of messages within that window, and
// then the oldest ids are dropped and their time is remembered instead
// (see seenSet.forgottenBefore).
const maxSeen = 1_000_000

// seenMargin is added to the times ids are kept by: local clock jumps.
const seenMargin = 24 * time.Hour

// senderSkew is how far ahead of ours a sender's clock may run for a
// message whose id the bound dropped to still be refused: its signed time
// is at most the time it was seen plus that skew.
const senderSkew = time.Hour

// seenRecoverLines is how many of the last history lines loadSeen reads
// back for ids a crash kept from the seen file: a whole batch of Receive
// (maxBatch lines, stored before their ids), with room for as many lines
// more appended by sends after the crash and before the next Receive.
const seenRecoverLines = 2 * maxBatch

// expireEvery is how often a long Receive forgets expired ids.
const expireEvery = time.Hour

// errReplaySuspect explains a WarnReplay for an envelope whose id may have
// been forgotten.
var errReplaySuspect = errors.New("sealed to a signed prekey and older than the oldest message id forgotten; it may be a replay")

// seenSet is the ids of the messages received with when each was seen, in
// the file seen. Only the one running Receive uses it.
//
// The file holds one id a line, appended and synced. A line "@T" (T in
// unix seconds) says that the ids after it were seen at T; a line "!T"
// says that ids seen at or before T were dropped by the maxSeen bound.
// Ids before any "@" line (files written before times were kept) count
// as seen when the file is loaded. Older clients read both kinds of line
// as ids that never occur, so the format stays readable both ways.
type seenSet struct {
	dir string
	max int
	now func() time.Time
	// horizon returns the time before which seen ids may be forgotten.
	horizon func(now time.Time) time.Time

	ids   map[string]int64 // id → unix seconds seen
	order []seenID         // in the order seen
	// forgotten is the newest time seen of an id dropped by the bound
	// (unix seconds, 0 if none).
	forgotten int64
	// marker is the time of the file's last "@" line; lines counts its
	// ids.
	marker int64
	lines  int
	// expired is when expired ids were last forgotten.
	expired time.Time
}

type seenID struct {
	id string
	at int64
}

// seenHorizon is the time before which a seen message id may be
// forgotten: an envelope opens only with a signed prekey the device still
// holds, and it reached the device after that prekey was created, so ids
// seen since the oldest held signed prekey was created are kept, and in
// any case those of the last rotation + grace period. Both get a day of
// margin.
func (c *Client) seenHorizon(now time.Time) time.Time {
	h := now.Add(-(c.cfg.SignedPreKeyRotation + c.cfg.SignedPreKeyGrace + seenMargin))
	err := c.store.view(func(_ *state, sec *secrets) error {
		for _, k := range sec.SignedPreKeys {
			if !k.Created.IsZero() && k.Created.Add(-seenMargin).Before(h) {
				h = k.Created.Add(-seenMargin)
			}
		}
		return nil
	})
	if err != nil {
		return time.Time{} // forget nothing
	}
	return h
}

// loadSeen reads the seen ids, adding those of the last seenRecoverLines
// lines (and last MiB) of the history: a crash may have stored a batch of
// messages without recording their ids (nor the cursor and the used
// one-time prekeys, so the node sends them again and they open). It forgets
// the ids seen before horizon(now()) and keeps at most max.
func loadSeen(dir string, limit int, now func() time.Time, horizon func(time.Time) time.Time) (*seenSet, error) {
	s := &seenSet{dir: dir, max: limit, now: now, horizon: horizon, ids: map[string]int64{}}
	loaded := now().Unix()
	legacy := false
	f, err := os.Open(filepath.Join(dir, seenFile))
	switch {
	case err == nil:
		at := int64(0)
		err = eachLine(f, func(line []byte) {
			if t, ok := seenTime(line, '@'); ok {
				at = t
				return
			}
			if t, ok := seenTime(line, '!'); ok {
				s.forgotten = max(s.forgotten, t)
				return
			}
			if at == 0 {
				legacy = true
				s.remember(string(line), loaded)
			} else {
				s.remember(string(line), at)
			}
			s.lines++
		})
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("client: seen: %w", err)
		}
	case !os.IsNotExist(err):
		return nil, fmt.Errorf("client: seen: %w", err)
	}
	tail, err := historyTailIDs(dir, seenRecoverLines, 1<<20)
	if err != nil {
		return nil, fmt.Errorf("client: history: %w", err)
	}
	var missing []string
	for _, id := range tail {
		if _, ok := s.ids[id]; !ok {
			missing = append(missing, id)
		}
	}
	expired := s.expire()
	bounded := s.bound()
	if legacy || expired > 0 || bounded || s.lines > 2*len(s.order)+1024 {
		// Rewrite the file: with times for a file written before they
		// were kept, and without the ids forgotten.
		if err := s.compact(); err != nil {
			return nil, err
		}
	}
	if err := s.add(missing...); err != nil {
		return nil, err
	}
	return s, nil
}

// seenTime parses a line "<prefix>T".
func seenTime(line []byte, prefix byte) (int64, bool) {
	if len(line) < 2 || line[0] != prefix {
		return 0, false
	}
	t, err := strconv.ParseInt(string(line[1:]), 10, 64)
	return t, err == nil
}

// remember adds id, seen at at, in memory.
func (s *seenSet) remember(id string, at int64) {
	if id == "" {
		return
	}
	if _, ok := s.ids[id]; ok {
		return
	}
	s.ids[id] = at
	s.order = append(s.order, seenID{id, at})
}

// has reports whether id was seen (and not forgotten).
func (s *seenSet) has(id string) bool {
	_, ok := s.ids[id]
	return ok
}

// forgottenBefore reports whether a message sent at t may be one whose id
// was dropped by the bound: then only its id could have told a replay.
func (s *seenSet) forgottenBefore(t time.Time) bool {
	return s.forgotten != 0 && !t.After(time.Unix(s.forgotten, 0).Add(senderSkew))
}

// expire forgets, in memory, the ids seen before the horizon and returns
// how many it forgot. Ids are forgotten only by age, never by count.
func (s *seenSet) expire() int {
	now := s.now()
	s.expired = now
	h := s.horizon(now)
	if h.IsZero() {
		return 0
	}
	cut := h.Unix()
	n := 0
	for n < len(s.order) && s.order[n].at < cut {
		delete(s.ids, s.order[n].id)
		n++
	}
	s.order = s.order[n:]
	return n
}

// bound drops the oldest ids past max, in memory, remembering the newest
// time dropped in forgotten. It reports whether it dropped any.
func (s *seenSet) bound() bool {
	n := len(s.order) - s.max
	if n <= 0 {
		return false
	}
	for _, e := range s.order[:n] {
		delete(s.ids, e.id)
		s.forgotten = max(s.forgotten, e.at)
	}
	s.order = s.order[n:]
	return true
}

// add records ids, seen now, durably. The caller holds the state
// directory's lock.
func (s *seenSet) add(ids ...string) error {
	now := s.now()
	if now.Sub(s.expired) >= expireEvery {
		s.expire()
	}
	// Ids seen within a minute share one "@" line.
	at := now.Unix()
	var b bytes.Buffer
	marker := s.marker
	if marker == 0 || at-marker >= 60 || at < marker {
		fmt.Fprintf(&b, "@%d\n", at)
		marker = at
	}
	n := 0
	for _, id := range ids {
		if _, ok := s.ids[id]; id == "" || ok {
			continue
		}
		s.remember(id, marker)
		b.WriteString(id)
		b.WriteByte('\n')
		n++
	}
	if n == 0 {
		return nil
	}
	s.lines += n
	if s.bound() {
		fmt.Fprintf(&b, "!%d\n", s.forgotten)
	}
	if s.lines > 2*len(s.order)+1024 {
		return s.compact()
	}
	if err := appendSync(s.dir, seenFile, b.Bytes()); err != nil {
		return err
	}
	s.marker = marker
	return nil
}

// compact rewrites the file with the ids remembered.
func (s *seenSet) compact() error {
	var b bytes.Buffer
	if s.forgotten != 0 {
		fmt.Fprintf(&b, "!%d\n", s.forgotten)
	}
	s.marker = 0
	for _, e := range s.order {
		if e.at != s.marker {
			fmt.Fprintf(&b, "@%d\n", e.at)
			s.marker = e.at
		}
		b.WriteString(e.id)
		b.WriteByte('\n')
	}
	s.lines = len(s.order)
	return writeFileAtomic(s.dir, seenFile, b.Bytes())
}
