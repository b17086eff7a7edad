package server

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/valise-im/valise"
	adminv1 "github.com/valise-im/valise/proto/valise/admin/v1"
	"github.com/valise-im/valise/storage"
)

// BackupChunkBytes is the largest chunk of a database backup in one
// BackupDatabase message.
const BackupChunkBytes = 1 << 20

// BackupInfo describes a finished database backup.
type BackupInfo struct {
	Size          int64
	SHA256        []byte
	SchemaVersion int64
	Time          time.Time
}

// BackupDatabase makes a consistent copy of the node's database and passes
// it to send in order, in chunks of at most BackupChunkBytes (send may
// keep them). Once every byte is sent it records
// the backup in the audit log and returns its length and SHA-256. One
// backup runs at a time: a second call fails with KindPrecondition, as
// does a call on a store that cannot back itself up (PostgreSQL).
func (n *Node) BackupDatabase(ctx context.Context, actor string, send func(chunk []byte) error) (BackupInfo, error) {
	b, ok := n.store.(storage.Backuper)
	if !ok {
		return BackupInfo{}, valise.Errorf(valise.KindPrecondition, "this node's storage cannot be backed up online")
	}
	if !n.backingUp.TryLock() {
		return BackupInfo{}, valise.Errorf(valise.KindPrecondition, "a backup of this node is already running; try again when it ends")
	}
	defer n.backingUp.Unlock()
	at := n.now().UTC()
	snap, err := b.Backup(ctx)
	if errors.Is(err, storage.ErrUnsupported) {
		return BackupInfo{}, &valise.Error{Kind: valise.KindPrecondition,
			Public: "this node stores its data in PostgreSQL: back it up with pg_dump -Fc (see docs/ops/backups.md)", Err: err}
	}
	if errors.Is(err, storage.ErrNoSpace) {
		// The sizes and the directory are the admin's own; say them.
		return BackupInfo{}, &valise.Error{Kind: valise.KindPrecondition, Public: "not enough disk space for a backup: " + err.Error(), Err: err}
	}
	if err != nil {
		return BackupInfo{}, fmt.Errorf("backup: %w", err)
	}
	defer snap.Close()
	h := sha256.New()
	var size int64
	for {
		// A fresh buffer each time: gRPC may still hold the last one.
		buf := make([]byte, min(BackupChunkBytes, max(snap.Size()-size, 1)))
		k, rerr := io.ReadFull(snap, buf)
		if k > 0 {
			h.Write(buf[:k])
			size += int64(k)
			if err := send(buf[:k]); err != nil {
				return BackupInfo{}, err
			}
		}
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			break
		}
		if rerr != nil {
			return BackupInfo{}, fmt.Errorf("backup: read copy: %w", rerr)
		}
	}
	if size != snap.Size() {
		return BackupInfo{}, fmt.Errorf("backup: read %d bytes of a %d-byte copy", size, snap.Size())
	}
	info := BackupInfo{Size: size, SHA256: h.Sum(nil), SchemaVersion: snap.SchemaVersion(), Time: at}
	sum := hex.EncodeToString(info.SHA256)
	detail := "size=" + strconv.FormatInt(size, 10) + " sha256=" + sum
	if _, err := n.store.AppendAudit(ctx, *n.audit(actor, "database.backup", string(n.cfg.Node), detail)); err != nil {
		return BackupInfo{}, fmt.Errorf("backup: %w", err)
	}
	n.log.InfoContext(ctx, "database backed up", "actor", actor, "bytes", size, "sha256", sum, "schema_version", info.SchemaVersion)
	return info, nil
}

func (s *adminService) BackupDatabase(_ *adminv1.BackupDatabaseRequest, stream adminv1.AdminService_BackupDatabaseServer) error {
	ctx := stream.Context()
	info, err := s.n.BackupDatabase(ctx, actorFrom(ctx), func(chunk []byte) error {
		return stream.Send(&adminv1.BackupDatabaseResponse{Part: &adminv1.BackupDatabaseResponse_Chunk{Chunk: chunk}})
	})
	if err != nil {
		return err
	}
	return stream.Send(&adminv1.BackupDatabaseResponse{Part: &adminv1.BackupDatabaseResponse_Summary{Summary: &adminv1.BackupSummary{
		SizeBytes:     info.Size,
		Sha256:        info.SHA256,
		SchemaVersion: info.SchemaVersion,
		Time:          timestamppb.New(info.Time),
	}}})
}
