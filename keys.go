package valise

// Bounds on published device keys. Keys are opaque bytes; only sizes and
// counts are checked.
const (
	// MaxPublicKeyLen bounds an identity key or a prekey's public key. An
	// ML-KEM-768 + X25519 hybrid public key is 1,216 bytes.
	MaxPublicKeyLen = 2048
	// MaxSignatureLen bounds a prekey signature.
	MaxSignatureLen = 256
	// DefaultMaxOneTimeKeysPerUpload bounds one-time prekeys in one publish.
	DefaultMaxOneTimeKeysPerUpload = 100
	// DefaultMaxOneTimeKeysStored bounds one-time prekeys stored per device.
	DefaultMaxOneTimeKeysStored = 500
)

// PreKey is a signed prekey or a one-time prekey: a public key with the
// device's identity key's signature over it.
type PreKey struct {
	KeyID     uint32
	PublicKey []byte
	Signature []byte
}

// DeviceKeys is what a device publishes: its identity key and signed prekey.
type DeviceKeys struct {
	Device       DeviceID
	IdentityKey  []byte
	SignedPreKey PreKey
}
