// Package federation connects this node to its peers. It owns peer trust
// (which nodes are peers, which CAs certify each peer's name, and the TLS
// configurations that enforce both), and later the outbound delivery queue
// and the inbound federation service. It imports storage and proto, never
// server.
package federation
