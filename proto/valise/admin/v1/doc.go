// Package adminv1 holds the generated Go code of valise.admin.v1, the
// AdminService that valisectl speaks to a node. The source of truth is
// admin.proto beside it; regenerate with `buf generate`.
package adminv1
