// Package federationv1 holds the generated Go code of valise.federation.v1,
// the FederationService one node speaks to another over mTLS. The source of
// truth is federation.proto beside it; regenerate with `buf generate`.
package federationv1
