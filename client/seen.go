package client

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// maxSeen is how many received message ids are remembered to drop
// replays; the file is compacted to that many when it holds twice as many.
const maxSeen = 100_000

// seenSet is the ids of the messages received, in seen (one hex id a
// line, appended and synced). Only the one running Receive uses it.
type seenSet struct {
	dir   string
	max   int
	ids   map[string]bool
	order []string
}

// loadSeen reads the seen ids, adding those at the end of the history: a
// crash may have stored a message without recording its id.
func loadSeen(dir string, max int) (*seenSet, error) {
	s := &seenSet{dir: dir, max: max, ids: map[string]bool{}}
	f, err := os.Open(filepath.Join(dir, seenFile))
	switch {
	case err == nil:
		err = eachLine(f, func(line []byte) { s.remember(string(line)) })
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("client: seen: %w", err)
		}
	case !os.IsNotExist(err):
		return nil, fmt.Errorf("client: seen: %w", err)
	}
	tail, err := historyTailIDs(dir, 1<<20)
	if err != nil {
		return nil, fmt.Errorf("client: history: %w", err)
	}
	var missing []string
	for _, id := range tail {
		if !s.ids[id] {
			missing = append(missing, id)
		}
	}
	if len(missing) > 0 {
		if err := s.add(missing...); err != nil {
			return nil, err
		}
	}
	return s, nil
}

func (s *seenSet) remember(id string) {
	if id == "" || s.ids[id] {
		return
	}
	s.ids[id] = true
	s.order = append(s.order, id)
}

func (s *seenSet) has(id string) bool { return s.ids[id] }

// add records ids durably. The caller holds the state directory's lock.
func (s *seenSet) add(ids ...string) error {
	var b bytes.Buffer
	for _, id := range ids {
		if id == "" || s.ids[id] {
			continue
		}
		s.remember(id)
		b.WriteString(id)
		b.WriteByte('\n')
	}
	if b.Len() == 0 {
		return nil
	}
	if len(s.order) > 2*s.max {
		return s.compact()
	}
	return appendSync(s.dir, seenFile, b.Bytes())
}

// compact keeps the last max ids.
func (s *seenSet) compact() error {
	drop := s.order[:len(s.order)-s.max]
	for _, id := range drop {
		delete(s.ids, id)
	}
	s.order = append([]string(nil), s.order[len(drop):]...)
	return writeFileAtomic(s.dir, seenFile, []byte(strings.Join(s.order, "\n")+"\n"))
}
