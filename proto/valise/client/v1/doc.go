// Package clientv1 holds the generated Go code of valise.client.v1, the
// ClientService a device speaks to its home node. The source of truth is
// client.proto beside it; regenerate with `buf generate`.
package clientv1
