package server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/valise-im/valise"
	"github.com/valise-im/valise/storage"
)

// backupStore is a Store whose Backup serves data, waiting for release
// first when it is not nil; only Backup and AppendAudit are called.
type backupStore struct {
	storage.Store
	data    []byte
	err     error
	started chan struct{} // closed when Backup is entered, if not nil
	release chan struct{}

	mu     sync.Mutex
	audits []storage.AuditRecord
}

type memBackup struct {
	*bytes.Reader
	size int64
}

func (b *memBackup) Close() error         { return nil }
func (b *memBackup) Size() int64          { return b.size }
func (b *memBackup) SchemaVersion() int64 { return 7 }

func (s *backupStore) Backup(ctx context.Context) (storage.Backup, error) {
	if s.started != nil {
		close(s.started)
		s.started = nil
		<-s.release
	}
	if s.err != nil {
		return nil, s.err
	}
	return &memBackup{Reader: bytes.NewReader(s.data), size: int64(len(s.data))}, nil
}

func (s *backupStore) AppendAudit(_ context.Context, r storage.AuditRecord) (storage.AuditEvent, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.audits = append(s.audits, r)
	return storage.AuditEvent{Seq: int64(len(s.audits)), AuditRecord: r}, nil
}

func (s *backupStore) auditLog() []storage.AuditRecord {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]storage.AuditRecord(nil), s.audits...)
}

func backupNode(store storage.Store) *Node {
	return NewNode(Config{Node: "localhost", Password: cheap}, store, nil, slog.New(slog.DiscardHandler))
}

// collect runs BackupDatabase and returns the chunks it sent.
func collect(n *Node) ([][]byte, BackupInfo, error) {
	var chunks [][]byte
	info, err := n.BackupDatabase(context.Background(), "unix:uid=0", func(c []byte) error {
		chunks = append(chunks, c)
		return nil
	})
	return chunks, info, err
}

func TestBackupDatabaseStreamsAndAudits(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789abcdef"), (5*BackupChunkBytes/2)/16+3)
	store := &backupStore{data: data}
	chunks, info, err := collect(backupNode(store))
	if err != nil {
		t.Fatalf("BackupDatabase: %v", err)
	}
	if len(chunks) != 3 {
		t.Errorf("got %d chunks, want 3 for %d bytes", len(chunks), len(data))
	}
	for i, c := range chunks {
		if len(c) > BackupChunkBytes {
			t.Errorf("chunk %d has %d bytes, more than %d", i, len(c), BackupChunkBytes)
		}
	}
	if got := bytes.Join(chunks, nil); !bytes.Equal(got, data) {
		t.Errorf("the chunks do not add up to the copy (%d bytes, want %d)", len(got), len(data))
	}
	sum := sha256.Sum256(data)
	if info.Size != int64(len(data)) || !bytes.Equal(info.SHA256, sum[:]) || info.SchemaVersion != 7 {
		t.Errorf("info = %+v, want size %d, sha256 %x, schema 7", info, len(data), sum)
	}
	audits := store.auditLog()
	want := fmt.Sprintf("size=%d sha256=%s", len(data), hex.EncodeToString(sum[:]))
	if len(audits) != 1 || audits[0].Action != "database.backup" || audits[0].Detail != want || audits[0].Actor != "unix:uid=0" {
		t.Errorf("audit = %+v, want one database.backup by unix:uid=0 with detail %q", audits, want)
	}
}

func TestBackupDatabaseOneAtATime(t *testing.T) {
	store := &backupStore{data: []byte("a database"), started: make(chan struct{}), release: make(chan struct{})}
	started := store.started
	n := backupNode(store)
	first := make(chan error, 1)
	go func() {
		_, _, err := collect(n)
		first <- err
	}()
	<-started
	if _, _, err := collect(n); valise.KindOf(err) != valise.KindPrecondition {
		t.Errorf("second backup while one runs: %v, want KindPrecondition", err)
	}
	close(store.release)
	if err := <-first; err != nil {
		t.Fatalf("first backup: %v", err)
	}
	if _, _, err := collect(n); err != nil {
		t.Errorf("backup after the first ended: %v", err)
	}
	if got := len(store.auditLog()); got != 2 {
		t.Errorf("%d audit records, want 2 (the refused backup is not one)", got)
	}
}

func TestBackupDatabaseRefusals(t *testing.T) {
	t.Run("postgres", func(t *testing.T) {
		store := &backupStore{err: fmt.Errorf("postgres: backup: %w", storage.ErrUnsupported)}
		_, _, err := collect(backupNode(store))
		var ve *valise.Error
		if !errors.As(err, &ve) || ve.Kind != valise.KindPrecondition || !strings.Contains(ve.Public, "pg_dump") {
			t.Errorf("BackupDatabase: %v, want KindPrecondition naming pg_dump", err)
		}
	})
	t.Run("no space", func(t *testing.T) {
		store := &backupStore{err: fmt.Errorf("%w in /var/lib/valise for the backup's temporary copy: 10 MiB free, 100 MiB needed", storage.ErrNoSpace)}
		_, _, err := collect(backupNode(store))
		var ve *valise.Error
		if !errors.As(err, &ve) || ve.Kind != valise.KindPrecondition || !strings.Contains(ve.Public, "10 MiB free, 100 MiB needed") {
			t.Errorf("BackupDatabase: %v, want KindPrecondition with the sizes", err)
		}
	})
	t.Run("no backup support", func(t *testing.T) {
		type plain struct{ storage.Store }
		if _, _, err := collect(backupNode(plain{})); valise.KindOf(err) != valise.KindPrecondition {
			t.Errorf("BackupDatabase: %v, want KindPrecondition", err)
		}
	})
	t.Run("caller gone", func(t *testing.T) {
		store := &backupStore{data: []byte("a database")}
		gone := errors.New("stream closed")
		_, err := backupNode(store).BackupDatabase(context.Background(), "unix:uid=0", func([]byte) error { return gone })
		if !errors.Is(err, gone) {
			t.Errorf("BackupDatabase: %v, want the send error", err)
		}
		if got := store.auditLog(); len(got) != 0 {
			t.Errorf("an unfinished backup was audited: %+v", got)
		}
	})
}
