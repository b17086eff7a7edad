package client

import "fmt"

// WarningKind says what a Warning is about.
type WarningKind int

// Warning kinds. The first three concern trust and should be shown
// loudly.
const (
	// WarnNewDevice: a user with verified devices has a new, unverified
	// device (pinned on first use). It may be a new phone, or a device
	// the node added.
	WarnNewDevice WarningKind = iota + 1
	// WarnChangedKey: a known device shows another identity key than the
	// pinned one. Send refuses it unless told to accept; Receive rejects
	// its envelopes.
	WarnChangedKey
	// WarnBadKeys: a device's published prekey signature does not verify
	// against its identity key; nothing was sealed to it.
	WarnBadKeys
	// WarnRejected: an envelope did not open or verify; it was dropped
	// and acknowledged so that it does not block the inbox.
	WarnRejected
	// WarnReplay: a message already received arrived again and was
	// dropped.
	WarnReplay
	// WarnDeliveryFailed: the node gave up delivering an envelope this
	// device sent to a user of another node (User and Device are the
	// recipient, Envelope the id Send got, Err the node's reason). The
	// message did not reach that device and will not.
	WarnDeliveryFailed
)

// Warning is something the user should hear about that did not stop the
// operation.
type Warning struct {
	Kind     WarningKind
	User     string // the user concerned
	Device   string // the device concerned
	Envelope string // the envelope id, for Receive
	Err      error  // the cause, if any
}

// String describes the warning in one line.
func (w Warning) String() string {
	var s string
	switch w.Kind {
	case WarnNewDevice:
		s = fmt.Sprintf("%s has a new device %s that is not verified; check the safety number (fingerprint %s) before trusting it", w.User, w.Device, w.User)
	case WarnChangedKey:
		s = fmt.Sprintf("the identity key of %s device %s CHANGED since it was first seen; this may be an attack; compare safety numbers (fingerprint %s)", w.User, w.Device, w.User)
	case WarnBadKeys:
		s = fmt.Sprintf("%s device %s published a prekey whose signature does not verify; not sending to it", w.User, w.Device)
	case WarnRejected:
		s = fmt.Sprintf("dropped envelope %s from %s device %s: it did not open or verify", w.Envelope, w.User, w.Device)
	case WarnDeliveryFailed:
		s = fmt.Sprintf("envelope %s to %s device %s was NOT delivered and will not be", w.Envelope, w.User, w.Device)
	case WarnReplay:
		s = fmt.Sprintf("dropped envelope %s from %s device %s: a repeat of a message already received", w.Envelope, w.User, w.Device)
	default:
		s = fmt.Sprintf("warning %d about %s device %s", int(w.Kind), w.User, w.Device)
	}
	if w.Err != nil {
		s += " (" + w.Err.Error() + ")"
	}
	return s
}
