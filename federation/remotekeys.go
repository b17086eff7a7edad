package federation

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/valise-im/valise"
	federationv1 "github.com/valise-im/valise/proto/valise/federation/v1"
	"github.com/valise-im/valise/storage"
)

// keyFetchEvery bounds how often one peer's signing keys are fetched
// because an answer named an unknown key id.
const keyFetchEvery = time.Minute

// Bounds on a peer's GetSigningKeys answer.
const (
	maxSigningKeys  = 16
	maxSigningKeyID = 64
	// maxRetryAfter caps a peer's RetryInfo passed on to clients.
	maxRetryAfter = 10 * time.Minute
)

// badAnswer is the detail of a peer answer that did not check out; it is
// logged, never shown.
type badAnswer string

func (b badAnswer) Error() string { return "federation: bad answer: " + string(b) }

// unavailable is the public error for a peer that did not answer
// correctly; the detail goes to the log.
func (o *Outbound) unavailable(ctx context.Context, node valise.NodeName, method string, detail error) error {
	o.log.WarnContext(ctx, "peer did not answer correctly", "peer", string(node), "method", method, "detail", detail.Error())
	return &valise.Error{Kind: valise.KindUnavailable,
		Public: fmt.Sprintf("node %s did not answer correctly; try again later", node), Err: detail}
}

// remoteError maps a failed call to a peer to a public error.
func (o *Outbound) remoteError(ctx context.Context, node valise.NodeName, method string, err error, notFound string) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	st := status.Convert(err)
	switch st.Code() {
	case codes.NotFound:
		if notFound != "" {
			return valise.Errorf(valise.KindNotFound, "%s", notFound)
		}
	case codes.ResourceExhausted:
		d, ok := retryDelay(st)
		if !ok {
			d = time.Second
		}
		return valise.Exhausted(min(d, maxRetryAfter), "node %s is limiting this node's lookups; retry later", node)
	}
	return o.unavailable(ctx, node, method, fmt.Errorf("%s: %s", st.Code(), sanitize(st.Message(), 120)))
}

// peerConn returns the connection to node, checking it is a peer.
func (o *Outbound) peerConn(node valise.NodeName) (*conn, error) {
	if err := o.CheckDestination(node); err != nil {
		return nil, err
	}
	c, err := o.pool.get(node)
	if errors.Is(err, errNotPeer) {
		return nil, valise.Errorf(valise.KindPermission, "node %s is not a federation peer of this node (or is blocked)", node)
	}
	return c, err
}

// DeviceKeys returns the published keys of every device of user, a user
// of a peer, as the peer signed them. The answer is accepted only if it
// is signed by a key pinned for the peer (unknown key ids are fetched
// and pinned), names the peer and user asked for, and was issued within
// MaxClockSkew of this node's clock and within the key's validity.
func (o *Outbound) DeviceKeys(ctx context.Context, user valise.UserID) ([]valise.DeviceKeys, error) {
	node := user.Node
	c, err := o.peerConn(node)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, o.cfg.KeyTimeout)
	defer cancel()
	resp, err := c.client.QueryDeviceKeys(ctx, &federationv1.QueryDeviceKeysRequest{
		Origin: string(o.cfg.Self),
		User:   user.String(),
	})
	if err != nil {
		return nil, o.remoteError(ctx, node, "QueryDeviceKeys", err, "")
	}
	var list federationv1.DeviceKeyList
	if err := o.verified(ctx, c, node, contextDeviceKeys, resp.GetSignedDeviceKeys(), resp.GetSignature(), resp.GetSigningKeyId(), &list); err != nil {
		return nil, o.keyError(ctx, node, "QueryDeviceKeys", err)
	}
	if list.GetNode() != string(node) || list.GetUser() != user.String() {
		return nil, o.unavailable(ctx, node, "QueryDeviceKeys", badAnswer("signed list names another node or user"))
	}
	out := make([]valise.DeviceKeys, 0, len(list.GetDevices()))
	var last valise.DeviceID
	for _, d := range list.GetDevices() {
		id, err := valise.ParseDeviceID(d.GetDeviceId())
		if err != nil || id <= last {
			return nil, o.unavailable(ctx, node, "QueryDeviceKeys", badAnswer("device ids malformed or out of order"))
		}
		last = id
		spk, err := preKeyOf(d.GetSignedPrekey())
		if err != nil || !sizeOK(d.GetIdentityKey(), valise.MaxPublicKeyLen) {
			return nil, o.unavailable(ctx, node, "QueryDeviceKeys", badAnswer("device keys malformed"))
		}
		out = append(out, valise.DeviceKeys{Device: id, IdentityKey: d.GetIdentityKey(), SignedPreKey: spk})
	}
	return out, nil
}

// ClaimOneTimeKey claims one one-time prekey of device, a device of user
// on a peer, for requesterDevice of requester, a user of this node. It
// returns the signed prekey with fallback true when the device has no
// one-time key left. The signed claim must name the peer, user, device,
// requester and requester device asked for, and pass the checks of
// DeviceKeys.
func (o *Outbound) ClaimOneTimeKey(ctx context.Context, requester valise.UserID, requesterDevice valise.DeviceID,
	user valise.UserID, device valise.DeviceID) (valise.PreKey, bool, error) {
	if requester.Node != o.cfg.Self {
		return valise.PreKey{}, false, valise.Errorf(valise.KindInvalid, "the requester must be a user of this node")
	}
	node := user.Node
	c, err := o.peerConn(node)
	if err != nil {
		return valise.PreKey{}, false, err
	}
	ctx, cancel := context.WithTimeout(ctx, o.cfg.KeyTimeout)
	defer cancel()
	resp, err := c.client.ClaimOneTimeKey(ctx, &federationv1.ClaimOneTimeKeyRequest{
		Origin:            string(o.cfg.Self),
		RequesterUser:     requester.String(),
		RequesterDeviceId: string(requesterDevice),
		User:              user.String(),
		DeviceId:          string(device),
	})
	if err != nil {
		return valise.PreKey{}, false, o.remoteError(ctx, node, "ClaimOneTimeKey", err,
			fmt.Sprintf("%s has no device %s with published keys", user, device))
	}
	var claim federationv1.ClaimedKey
	if err := o.verified(ctx, c, node, contextClaimedKey, resp.GetSignedClaim(), resp.GetSignature(), resp.GetSigningKeyId(), &claim); err != nil {
		return valise.PreKey{}, false, o.keyError(ctx, node, "ClaimOneTimeKey", err)
	}
	if claim.GetNode() != string(node) || claim.GetUser() != user.String() || claim.GetDeviceId() != string(device) ||
		claim.GetRequesterUser() != requester.String() || claim.GetRequesterDeviceId() != string(requesterDevice) {
		return valise.PreKey{}, false, o.unavailable(ctx, node, "ClaimOneTimeKey", badAnswer("signed claim names another node, user, device or requester"))
	}
	key, err := preKeyOf(claim.GetKey())
	if err != nil {
		return valise.PreKey{}, false, o.unavailable(ctx, node, "ClaimOneTimeKey", err)
	}
	return key, claim.GetFallback(), nil
}

// keyError maps a verification failure to a public error.
func (o *Outbound) keyError(ctx context.Context, node valise.NodeName, method string, err error) error {
	var pub *valise.Error
	if errors.As(err, &pub) || ctx.Err() != nil {
		return err
	}
	return o.unavailable(ctx, node, method, err)
}

// signedObject is a signed answer's payload with its issued time.
type signedObject interface {
	proto.Message
	GetIssuedTime() *timestamppb.Timestamp
}

// verified checks sig over signed with the peer's key keyID and only then
// parses signed into msg, checking its issued time against the clock and
// the key's validity.
func (o *Outbound) verified(ctx context.Context, c *conn, node valise.NodeName, sigContext string,
	signed, sig []byte, keyID string, msg signedObject) error {
	key, err := o.signingKey(ctx, c, node, keyID)
	if err != nil {
		return err
	}
	if !verify(key.PublicKey, sigContext, signed, sig) {
		return badAnswer("signature does not verify with key " + sanitize(keyID, maxSigningKeyID))
	}
	if err := proto.Unmarshal(signed, msg); err != nil {
		return badAnswer("signed bytes do not parse")
	}
	issued, ok := timeOf(msg.GetIssuedTime())
	if !ok {
		return badAnswer("no issued time")
	}
	now := o.cfg.Now()
	if issued.Before(now.Add(-o.cfg.MaxClockSkew)) || issued.After(now.Add(o.cfg.MaxClockSkew)) {
		return badAnswer("issued time too far from this node's clock")
	}
	if issued.Before(key.ValidFrom) || !issued.Before(key.ValidUntil) {
		return badAnswer("issued outside the signing key's validity")
	}
	return nil
}

// signingKey returns the key keyID pinned for node. An unknown id makes
// it fetch the peer's keys (at most once per keyFetchEvery) and pin them;
// a pinned id that comes back with another key raises an alarm, keeps
// the pin and fails.
func (o *Outbound) signingKey(ctx context.Context, c *conn, node valise.NodeName, keyID string) (storage.SigningKey, error) {
	if keyID == "" || len(keyID) > maxSigningKeyID {
		return storage.SigningKey{}, badAnswer("malformed signing key id")
	}
	find := func() (storage.SigningKey, bool, error) {
		pinned, err := o.cfg.Store.PinnedSigningKeys(ctx, node)
		if err != nil {
			return storage.SigningKey{}, false, fmt.Errorf("federation: pinned keys of %s: %w", node, err)
		}
		for _, k := range pinned {
			if k.KeyID == keyID {
				return k, true, nil
			}
		}
		return storage.SigningKey{}, false, nil
	}
	k, ok, err := find()
	if ok || err != nil {
		return k, err
	}
	if !o.mayFetchKeys(node) {
		return storage.SigningKey{}, badAnswer("unknown signing key id; keys fetched recently")
	}
	resp, err := c.client.GetSigningKeys(ctx, &federationv1.GetSigningKeysRequest{})
	if err != nil {
		return storage.SigningKey{}, o.remoteError(ctx, node, "GetSigningKeys", err, "")
	}
	keys, err := signingKeysOf(resp)
	if err != nil {
		return storage.SigningKey{}, err
	}
	if err := o.cfg.Store.PinSigningKeys(ctx, node, keys); err != nil {
		if errors.Is(err, storage.ErrConflict) {
			o.log.ErrorContext(ctx, "ALARM: peer presented another public key for a pinned signing key id; keeping the pinned key",
				"peer", string(node))
			return storage.SigningKey{}, badAnswer("a pinned signing key id came back with another key")
		}
		return storage.SigningKey{}, fmt.Errorf("federation: pin keys of %s: %w", node, err)
	}
	o.fetchedKeys(node)
	k, ok, err = find()
	if err == nil && !ok {
		err = badAnswer("signing key id not among the peer's keys")
	}
	return k, err
}

// mayFetchKeys reports whether node's signing keys may be fetched now
// for an unknown key id: at most once per keyFetchEvery after a fetch
// that pinned keys (recorded by fetchedKeys). Until one succeeds, every
// lookup may fetch (each lookup is already limited per device and by the
// peer), so a failed or concurrent first fetch never blocks the next.
func (o *Outbound) mayFetchKeys(node valise.NodeName) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	last, ok := o.fetched[node]
	return !ok || o.cfg.Now().Sub(last) >= keyFetchEvery
}

// fetchedKeys records a successful fetch of node's signing keys.
func (o *Outbound) fetchedKeys(node valise.NodeName) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.fetched[node] = o.cfg.Now()
}

// signingKeysOf checks and converts a GetSigningKeys answer.
func signingKeysOf(resp *federationv1.GetSigningKeysResponse) ([]storage.SigningKey, error) {
	if len(resp.GetSigningKeys()) > maxSigningKeys {
		return nil, badAnswer("too many signing keys")
	}
	keys := make([]storage.SigningKey, 0, len(resp.GetSigningKeys()))
	for _, k := range resp.GetSigningKeys() {
		from, ok1 := timeOf(k.GetValidFrom())
		until, ok2 := timeOf(k.GetValidUntil())
		if !validKeyID(k.GetKeyId()) || len(k.GetPublicKey()) != 32 || !ok1 || !ok2 || !from.Before(until) {
			return nil, badAnswer("malformed signing key")
		}
		keys = append(keys, storage.SigningKey{KeyID: k.GetKeyId(), PublicKey: k.GetPublicKey(), ValidFrom: from, ValidUntil: until})
	}
	return keys, nil
}

// validKeyID reports whether id is 1 to 64 bytes of [A-Za-z0-9._:-].
func validKeyID(id string) bool {
	if id == "" || len(id) > maxSigningKeyID {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == ':' || c == '-') {
			return false
		}
	}
	return true
}

// preKeyOf checks and converts a prekey of a signed answer.
func preKeyOf(k *federationv1.PreKey) (valise.PreKey, error) {
	if k == nil || !sizeOK(k.GetPublicKey(), valise.MaxPublicKeyLen) || !sizeOK(k.GetSignature(), valise.MaxSignatureLen) {
		return valise.PreKey{}, badAnswer("prekey malformed")
	}
	return valise.PreKey{KeyID: k.GetKeyId(), PublicKey: k.GetPublicKey(), Signature: k.GetSignature()}, nil
}

func sizeOK(b []byte, limit int) bool { return len(b) > 0 && len(b) <= limit }
