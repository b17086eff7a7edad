package storagetest

import (
	"fmt"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/valise-im/valise"
	"github.com/valise-im/valise/storage"
)

func testConcurrency(t *testing.T, open opener) {
	t.Run("Writers", func(t *testing.T) {
		s := open(t)
		mustUser(t, s, "alice", true)
		mustUser(t, s, "bob", true)
		a, _ := mustDevice(t, s, "alice")
		b, _ := mustDevice(t, s, "bob")
		const writers, batches = 8, 10
		results := make([][]storage.SendResult, writers)
		errs := make([]error, writers)
		var wg sync.WaitGroup
		for w := range writers {
			wg.Go(func() {
				sd := valise.DeviceID(fmt.Sprintf("DVWRITER%010d", w))
				for i := range batches {
					batch := &storage.Batch{Sends: []storage.SendOp{
						newSend(sd, fmt.Sprintf("k%d", i), a, b),
						newSend(sd, fmt.Sprintf("k%d-b", i), a),
					}}
					res, err := s.CommitBatch(t.Context(), batch)
					if err != nil {
						errs[w] = err
						return
					}
					results[w] = append(results[w], res.Sends...)
				}
			})
		}
		wg.Wait()
		for w, err := range errs {
			if err != nil {
				t.Fatalf("writer %d: CommitBatch: %v", w, err)
			}
		}
		delivered := map[valise.DeviceID]map[uint64]valise.EnvelopeID{a.ID: {}, b.ID: {}}
		for _, rs := range results {
			for _, r := range rs {
				if r.Err != nil || r.Replayed {
					t.Fatalf("send: got err %v, replayed %v", r.Err, r.Replayed)
				}
				for i, d := range r.Deliveries {
					if _, dup := delivered[d.Device][d.Cursor]; dup {
						t.Errorf("device %s: cursor %d delivered twice", d.Device, d.Cursor)
					}
					delivered[d.Device][d.Cursor] = r.IDs[i]
				}
			}
		}
		for _, d := range []storage.Device{a, b} {
			envs := readAll(t, s, d)
			n := writers * batches
			if d.ID == a.ID {
				n *= 2
			}
			if len(envs) != n {
				t.Errorf("device %s: got %d envelopes, want %d", d.ID, len(envs), n)
			}
			for i, e := range envs {
				if e.Cursor != uint64(i+1) {
					t.Errorf("device %s: envelope %d has cursor %d, want %d", d.ID, i, e.Cursor, i+1)
					break
				}
				if id := delivered[d.ID][e.Cursor]; id != e.ID {
					t.Errorf("device %s cursor %d: got id %s, delivery said %s", d.ID, e.Cursor, e.ID, id)
				}
			}
		}
	})

	t.Run("Audit", func(t *testing.T) {
		s := open(t)
		const writers = 10
		var wg sync.WaitGroup
		seqs := make([]int64, writers)
		for w := range writers {
			wg.Go(func() {
				ev, err := s.AppendAudit(t.Context(), *auditRecord("concurrent", fmt.Sprint(w)))
				if err != nil {
					t.Errorf("AppendAudit: %v", err)
				}
				seqs[w] = ev.Seq
			})
		}
		wg.Wait()
		evs := auditEvents(t, s)
		var got []int64
		for _, ev := range evs {
			got = append(got, ev.Seq)
		}
		var want []int64
		for i := range writers {
			want = append(want, int64(i+1))
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("audit seqs (-want +got):\n%s", diff)
		}
		if bad := storage.VerifyAuditChain(nil, evs); bad != 0 {
			t.Errorf("VerifyAuditChain: broken at %d", bad)
		}
	})
}
