// Package server implements a node's client-facing and admin-facing gRPC
// services: authentication, validation, limits, group-committed sends and
// live inbox streaming.
//
// The logic lives in Node, which knows neither protobuf nor SQL; the gRPC
// adapters in client.go and admin.go check the caller, validate, convert
// and map errors. NewClientServer and NewAdminServer build gRPC servers with
// every limit set explicitly. The package uses storage through its
// interfaces and never picks a backend; cmd/valised wires it.
package server
