// Package valise holds the domain vocabulary of a Valise node: node, user and
// device names with their parsing and validation, envelope and key types, and
// the error kinds that decide what a caller may be told.
//
// Every other package speaks this vocabulary. It imports only the standard
// library, so anything may import it.
package valise
