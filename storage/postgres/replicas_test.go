package postgres_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/valise-im/valise"
	"github.com/valise-im/valise/storage"
	"github.com/valise-im/valise/storage/postgres"
	"github.com/valise-im/valise/storage/postgres/pgtest"
)

// The tests in this file run two Stores on one database, as two valised
// replicas do: what the contract suite proves within one process must hold
// across processes too, since each Store has its own pool.

// replicas opens two stores on one fresh database.
func replicas(t *testing.T) [2]*postgres.Store {
	t.Helper()
	dsn := pgtest.DSN(t)
	return [2]*postgres.Store{openStore(t, dsn), openStore(t, dsn)}
}

// setUp creates the active users and one device for each, through s.
func setUp(t testing.TB, s storage.Store, users ...string) []storage.Device {
	t.Helper()
	var ds []storage.Device
	for i, u := range users {
		if err := s.CreateUser(t.Context(), storage.User{Localpart: u, PasswordHash: "h", Active: true}, nil); err != nil {
			t.Fatalf("CreateUser(%s): %v", u, err)
		}
		d := storage.Device{User: u, ID: valise.NewDeviceID()}
		if err := s.CreateDevice(t.Context(), d, []byte(fmt.Sprintf("token-%d", i))); err != nil {
			t.Fatalf("CreateDevice(%s): %v", u, err)
		}
		ds = append(ds, d)
	}
	return ds
}

func send(sd valise.DeviceID, key string, to ...storage.Device) storage.SendOp {
	op := storage.SendOp{
		Sender:         valise.UserID{Localpart: "carol", Node: "ministry-b.example"},
		SenderDevice:   sd,
		IdempotencyKey: key,
	}
	for _, d := range to {
		op.Envelopes = append(op.Envelopes, storage.NewEnvelope{
			ID: valise.NewEnvelopeID(time.Now()), Recipient: d.User, RecipientDevice: d.ID, Ciphertext: []byte("ct"),
		})
	}
	return op
}

func TestReplicasClaimOneTimeKeys(t *testing.T) {
	rs := replicas(t)
	d := setUp(t, rs[0], "alice")[0]
	const stock, claimers = 30, 40
	k := storage.PublishKeys{IdentityKey: []byte("ik"), SignedPreKey: valise.PreKey{KeyID: 1, PublicKey: []byte("spk")}}
	for i := range stock {
		k.OneTimeKeys = append(k.OneTimeKeys, valise.PreKey{KeyID: uint32(i + 1), PublicKey: []byte("otk")})
	}
	if _, err := rs[0].PublishKeys(t.Context(), "alice", d.ID, k, stock); err != nil {
		t.Fatalf("PublishKeys: %v", err)
	}
	type claim struct {
		id       uint32
		fallback bool
		err      error
	}
	claims := make([]claim, claimers)
	var wg sync.WaitGroup
	for i := range claimers {
		wg.Go(func() {
			key, fb, err := rs[i%2].ClaimOneTimeKey(t.Context(), "alice", d.ID)
			claims[i] = claim{key.KeyID, fb, err}
		})
	}
	wg.Wait()
	seen := map[uint32]bool{}
	fallbacks := 0
	for i, c := range claims {
		switch {
		case c.err != nil:
			t.Errorf("claim %d: %v", i, c.err)
		case c.fallback:
			fallbacks++
		case seen[c.id]:
			t.Errorf("claim %d: key %d handed out twice", i, c.id)
		default:
			seen[c.id] = true
		}
	}
	if len(seen) != stock || fallbacks != claimers-stock {
		t.Errorf("got %d distinct keys and %d fallbacks, want %d and %d", len(seen), fallbacks, stock, claimers-stock)
	}
}

func TestReplicasCommitBatches(t *testing.T) {
	rs := replicas(t)
	ds := setUp(t, rs[0], "alice", "bob")
	a, b := ds[0], ds[1]
	const writers, batches = 8, 10
	errs := make([]error, writers)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			sd := valise.DeviceID(fmt.Sprintf("DVWRITER%010d", w))
			for i := range batches {
				// Half the writers send to b then a, the others a then b.
				to := []storage.Device{a, b}
				if w%2 == 1 {
					to = []storage.Device{b, a}
				}
				batch := &storage.Batch{Sends: []storage.SendOp{send(sd, fmt.Sprint(i), to...), send(sd, "", a)}}
				res, err := rs[w%2].CommitBatch(t.Context(), batch)
				if err == nil && (res.Sends[0].Err != nil || res.Sends[1].Err != nil) {
					err = fmt.Errorf("send refused: %v, %v", res.Sends[0].Err, res.Sends[1].Err)
				}
				if err != nil {
					errs[w] = err
					return
				}
			}
		})
	}
	wg.Wait()
	for w, err := range errs {
		if err != nil {
			t.Fatalf("writer %d: %v", w, err)
		}
	}
	for _, d := range []storage.Device{a, b} {
		envs, err := rs[1].ReadInbox(t.Context(), d.User, d.ID, 0, 10000)
		if err != nil {
			t.Fatalf("ReadInbox: %v", err)
		}
		want := writers * batches
		if d.ID == a.ID {
			want *= 2
		}
		if len(envs) != want {
			t.Errorf("%s: got %d envelopes, want %d", d.User, len(envs), want)
		}
		for i, e := range envs {
			if e.Cursor != uint64(i+1) {
				t.Fatalf("%s: envelope %d has cursor %d, want %d", d.User, i, e.Cursor, i+1)
			}
		}
	}
}

func TestReplicasIdempotencyRace(t *testing.T) {
	rs := replicas(t)
	a := setUp(t, rs[0], "alice")[0]
	const rounds = 20
	const sd = valise.DeviceID("DVSENDERSENDERSEND")
	for i := range rounds {
		var results [2]storage.SendResult
		var errs [2]error
		var wg sync.WaitGroup
		for r := range 2 {
			wg.Go(func() {
				res, err := rs[r].CommitBatch(t.Context(), &storage.Batch{Sends: []storage.SendOp{send(sd, fmt.Sprint(i), a)}})
				errs[r] = err
				if err == nil {
					results[r] = res.Sends[0]
				}
			})
		}
		wg.Wait()
		for r, err := range errs {
			if err != nil {
				t.Fatalf("round %d replica %d: %v", i, r, err)
			}
		}
		if results[0].Replayed == results[1].Replayed {
			t.Fatalf("round %d: replayed %v and %v, want exactly one replay", i, results[0].Replayed, results[1].Replayed)
		}
		if results[0].IDs[0] != results[1].IDs[0] {
			t.Errorf("round %d: ids %v and %v differ", i, results[0].IDs, results[1].IDs)
		}
	}
	if n, err := rs[0].InboxDepth(t.Context()); err != nil || n != rounds {
		t.Errorf("InboxDepth: got %d, %v; want %d", n, err, rounds)
	}
}
