#!/bin/sh
# setup.sh: the one-shot setup service of deploy/compose/compose.yaml.
#
# For each of two organizations, A and B, it
#   1. creates a random PostgreSQL password (SECRETS/postgres-password,
#      which that organization's PostgreSQL reads at its first start);
#   2. initializes the node's data directory with `valised init --postgres`
#      (its own CA, node certificate, keys; listeners on the given addresses);
#   3. gives it the other organization's CA certificate
#      (DATA/peers/PEER-ca.pem) and declares that organization a peer in
#      federation.peers of its valised.yaml;
#   4. runs `valised check` on it.
# Then, when run as root, it hands the data directories to the node's
# user (NODE_UID) and each password file to PostgreSQL's (PG_UID).
#
# It is idempotent: a directory that already holds a node is kept as it is
# (only its copy of the peer's CA is refreshed), so `docker compose up`
# may run it again. A test (cmd/valised, TestComposeSetup) runs it with the
# real binaries and checks that a message crosses from A to B.
#
# Environment (defaults are the compose file's):
#   VALISED            the valised binary (valised)
#   POSTGRES_USER      the database role (valise)
#   NODE_UID, PG_UID   owners when run as root (65532, 999)
#   A_NAME, B_NAME     node names (ministry-a.example, ministry-b.example)
#   X_DATA             data directory (/data/a, /data/b)
#   X_SECRETS          directory for the PostgreSQL password (/secrets/a, /secrets/b)
#   X_POSTGRES         PostgreSQL HOST:PORT (postgres-a:5432, postgres-b:5432)
#   X_POSTGRES_DB      database name (valise)
#   X_FEDERATION       address the other node dials (X_NAME:7444)
#   X_CLIENT_ADDR, X_FEDERATION_ADDR, X_HEALTH_ADDR, X_METRICS_ADDR
#                      listen addresses (0.0.0.0:7443, :7444, :7445, :9464)
# where X is A or B.
set -eu

VALISED=${VALISED:-valised}
POSTGRES_USER=${POSTGRES_USER:-valise}
NODE_UID=${NODE_UID:-65532}
PG_UID=${PG_UID:-999}

A_NAME=${A_NAME:-ministry-a.example}
A_DATA=${A_DATA:-/data/a}
A_SECRETS=${A_SECRETS:-/secrets/a}
A_POSTGRES=${A_POSTGRES:-postgres-a:5432}
A_POSTGRES_DB=${A_POSTGRES_DB:-valise}
A_FEDERATION=${A_FEDERATION:-$A_NAME:7444}
A_CLIENT_ADDR=${A_CLIENT_ADDR:-0.0.0.0:7443}
A_FEDERATION_ADDR=${A_FEDERATION_ADDR:-0.0.0.0:7444}
A_HEALTH_ADDR=${A_HEALTH_ADDR:-0.0.0.0:7445}
A_METRICS_ADDR=${A_METRICS_ADDR:-0.0.0.0:9464}

B_NAME=${B_NAME:-ministry-b.example}
B_DATA=${B_DATA:-/data/b}
B_SECRETS=${B_SECRETS:-/secrets/b}
B_POSTGRES=${B_POSTGRES:-postgres-b:5432}
B_POSTGRES_DB=${B_POSTGRES_DB:-valise}
B_FEDERATION=${B_FEDERATION:-$B_NAME:7444}
B_CLIENT_ADDR=${B_CLIENT_ADDR:-0.0.0.0:7443}
B_FEDERATION_ADDR=${B_FEDERATION_ADDR:-0.0.0.0:7444}
B_HEALTH_ADDR=${B_HEALTH_ADDR:-0.0.0.0:7445}
B_METRICS_ADDR=${B_METRICS_ADDR:-0.0.0.0:9464}

say() { printf 'setup: %s\n' "$*"; }

# init_org NAME DATA SECRETS POSTGRES DB CLIENT FEDERATION HEALTH METRICS
init_org() {
	name=$1 data=$2 secrets=$3 pg=$4 db=$5
	mkdir -p "$secrets"
	chmod 0700 "$secrets"
	if [ ! -s "$secrets/postgres-password" ]; then
		(umask 077 && od -An -N24 -tx1 /dev/urandom | tr -d ' \n' >"$secrets/postgres-password")
		say "$name: created a PostgreSQL password in $secrets/postgres-password"
	fi
	if [ -f "$data/valised.yaml" ]; then
		say "$name: $data already holds a node; keeping it"
		return
	fi
	password=$(cat "$secrets/postgres-password")
	# The compose network between a node and its PostgreSQL is private to
	# the two, hence sslmode=disable.
	"$VALISED" init --data "$data" --name "$name" \
		--client-addr "$6" --federation-addr "$7" --health-addr "$8" --metrics-addr "$9" \
		--postgres "postgres://$POSTGRES_USER:$password@$pg/$db?sslmode=disable" >/dev/null
	say "$name: initialized $data"
}

# add_peer DATA PEER_NAME PEER_ADDRESS PEER_DATA
add_peer() {
	data=$1 peer=$2 address=$3 peer_data=$4
	mkdir -p "$data/peers"
	cp "$peer_data/ca.crt" "$data/peers/$peer-ca.pem.tmp"
	mv "$data/peers/$peer-ca.pem.tmp" "$data/peers/$peer-ca.pem"
	cfg=$data/valised.yaml
	if grep -q '^  peers: \[\]$' "$cfg"; then
		awk -v peer="$peer" -v address="$address" '
			$0 == "  peers: []" {
				print "  peers:"
				print "    - name: " peer
				print "      address: " address
				print "      ca_bundle_file: peers/" peer "-ca.pem"
				next
			}
			{ print }' "$cfg" >"$cfg.tmp"
		chmod 0600 "$cfg.tmp"
		mv "$cfg.tmp" "$cfg"
		say "$cfg: $peer at $address is a peer"
	elif ! grep -q "^    - name: $peer\$" "$cfg"; then
		say "$cfg declares other peers but not $peer: add it by hand (federation.peers)" >&2
		exit 1
	fi
}

init_org "$A_NAME" "$A_DATA" "$A_SECRETS" "$A_POSTGRES" "$A_POSTGRES_DB" \
	"$A_CLIENT_ADDR" "$A_FEDERATION_ADDR" "$A_HEALTH_ADDR" "$A_METRICS_ADDR"
init_org "$B_NAME" "$B_DATA" "$B_SECRETS" "$B_POSTGRES" "$B_POSTGRES_DB" \
	"$B_CLIENT_ADDR" "$B_FEDERATION_ADDR" "$B_HEALTH_ADDR" "$B_METRICS_ADDR"

add_peer "$A_DATA" "$B_NAME" "$B_FEDERATION" "$B_DATA"
add_peer "$B_DATA" "$A_NAME" "$A_FEDERATION" "$A_DATA"

"$VALISED" check --data "$A_DATA"
"$VALISED" check --data "$B_DATA"

if [ "$(id -u)" = 0 ]; then
	chown -R "$NODE_UID:$NODE_UID" "$A_DATA" "$B_DATA"
	chown -R "$PG_UID:$PG_UID" "$A_SECRETS" "$B_SECRETS"
	chmod 0400 "$A_SECRETS/postgres-password" "$B_SECRETS/postgres-password"
fi
say "done: start the nodes (docker compose up -d)"
