// Package kubernetes holds the Kubernetes manifests of a Valise node (one
// node, several valised replicas sharing PostgreSQL) and, in its tests,
// their strict check: every manifest decodes into the Kubernetes API types
// with unknown fields refused, and the invariants an admin relies on hold
// (gRPC probes on the health port, no root, no inlined secret, Services
// and NetworkPolicy on declared ports, a config the node accepts). It has
// no code; nothing imports it.
package kubernetes
