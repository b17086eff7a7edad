package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	adminv1 "github.com/valise-im/valise/proto/valise/admin/v1"
)

// backup streams a copy of the node's SQLite database into --out. The
// file appears only once the whole stream has arrived and matches the
// node's summary (length and SHA-256): it is written to a temporary file
// beside --out, synced, and then renamed, so a crash or an interrupted
// stream never leaves a partial backup under the name. There is no
// deadline (--timeout does not apply): a large database takes as long as
// it takes; Ctrl-C stops it.
func backup(fs *flag.FlagSet) func(context.Context, *cli, []string) error {
	var out string
	var force bool
	fs.StringVar(&out, "out", "", "the file to write the backup to")
	fs.BoolVar(&force, "force", false, "replace --out if it exists")
	return func(ctx context.Context, c *cli, _ []string) error {
		if out == "" {
			return usageErrorf("backup: --out FILE is required")
		}
		if !force {
			if _, err := os.Lstat(out); err == nil {
				return fmt.Errorf("%s exists; pass --force to replace it", out)
			}
		}
		sum, err := receiveBackup(ctx, c, out, force)
		if err != nil {
			return err
		}
		if c.g.json {
			return printJSON(c.stdout, sum)
		}
		_, err = fmt.Fprintf(c.stdout, "backup written to %s: %d bytes, sha256 %s, schema version %d\n",
			out, sum.GetSizeBytes(), hex.EncodeToString(sum.GetSha256()), sum.GetSchemaVersion())
		return err
	}
}

// receiveBackup runs BackupDatabase and writes the verified copy to out
// (mode 0600), atomically.
func receiveBackup(ctx context.Context, c *cli, out string, force bool) (*adminv1.BackupSummary, error) {
	f, err := os.CreateTemp(filepath.Dir(out), "."+filepath.Base(out)+".*.tmp")
	if err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	tmp := f.Name()
	done := false
	defer func() {
		if !done {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err := f.Chmod(0o600); err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.admin.BackupDatabase(ctx, &adminv1.BackupDatabaseRequest{})
	if err != nil {
		return nil, err
	}
	h := sha256.New()
	w := io.MultiWriter(f, h)
	var size int64
	var sum *adminv1.BackupSummary
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		if sum != nil {
			return nil, errors.New("backup: the node sent data after the summary; the backup is discarded")
		}
		switch p := msg.GetPart().(type) {
		case *adminv1.BackupDatabaseResponse_Chunk:
			if _, err := w.Write(p.Chunk); err != nil {
				return nil, fmt.Errorf("backup: %w", err)
			}
			size += int64(len(p.Chunk))
		case *adminv1.BackupDatabaseResponse_Summary:
			sum = p.Summary
		default:
			return nil, errors.New("backup: the node sent an empty part; the backup is discarded")
		}
	}
	switch {
	case sum == nil:
		return nil, errors.New("backup: the stream ended without its summary; the backup is incomplete and was discarded")
	case sum.GetSizeBytes() != size:
		return nil, fmt.Errorf("backup: received %d bytes, the node sent %d; the backup was discarded", size, sum.GetSizeBytes())
	case !bytes.Equal(sum.GetSha256(), h.Sum(nil)):
		return nil, errors.New("backup: SHA-256 of the received bytes does not match the node's; the backup was discarded")
	}
	if err := f.Sync(); err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	if force {
		err = os.Rename(tmp, out)
	} else {
		// A link fails if out appeared meanwhile: never replace a file
		// without --force.
		switch err = os.Link(tmp, out); {
		case err == nil:
			os.Remove(tmp)
		case errors.Is(err, fs.ErrExist):
			err = fmt.Errorf("%s exists; pass --force to replace it", out)
		default:
			// A file system without hard links (FAT, some network
			// shares): check, then rename. Only a file created in
			// between could be replaced.
			if _, lerr := os.Lstat(out); lerr == nil {
				err = fmt.Errorf("%s exists; pass --force to replace it", out)
			} else {
				err = os.Rename(tmp, out)
			}
		}
	}
	if err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	done = true
	if d, err := os.Open(filepath.Dir(out)); err == nil {
		err = d.Sync()
		d.Close()
		if err != nil {
			return nil, fmt.Errorf("backup: sync directory: %w", err)
		}
	}
	return sum, nil
}
