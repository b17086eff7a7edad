package storage

import (
	"encoding/json"
	"fmt"

	"github.com/valise-im/valise"
)

// Inbox rows are of one of these kinds; backends store the kind beside
// the row.
const (
	// KindEnvelope is a sealed envelope from a device.
	KindEnvelope = 0
	// KindDeliveryFailure is a delivery-failure notice from this node: its
	// ciphertext column holds EncodeFailure's bytes.
	KindDeliveryFailure = 1
)

// failureRecord is the stored form of a valise.DeliveryFailure.
type failureRecord struct {
	EnvelopeID      string `json:"envelope_id"`
	Recipient       string `json:"recipient"`
	RecipientNode   string `json:"recipient_node"`
	RecipientDevice string `json:"recipient_device"`
	Reason          string `json:"reason"`
}

// EncodeFailure returns the bytes a backend stores for a delivery-failure
// notice.
func EncodeFailure(f valise.DeliveryFailure) []byte {
	b, err := json.Marshal(failureRecord{
		EnvelopeID:      string(f.EnvelopeID),
		Recipient:       f.Recipient.Localpart,
		RecipientNode:   string(f.Recipient.Node),
		RecipientDevice: string(f.RecipientDevice),
		Reason:          string(f.Reason),
	})
	if err != nil {
		panic(err) // a struct of strings always encodes
	}
	return b
}

// DecodeFailure parses what EncodeFailure returned.
func DecodeFailure(b []byte) (*valise.DeliveryFailure, error) {
	var r failureRecord
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("delivery-failure notice: %w", err)
	}
	return &valise.DeliveryFailure{
		EnvelopeID:      valise.EnvelopeID(r.EnvelopeID),
		Recipient:       valise.UserID{Localpart: r.Recipient, Node: valise.NodeName(r.RecipientNode)},
		RecipientDevice: valise.DeviceID(r.RecipientDevice),
		Reason:          valise.FailureReason(r.Reason),
	}, nil
}
