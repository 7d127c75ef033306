#!/usr/bin/env bash
# What a Duo push costs a login beyond Duo itself, measured in one run (issue 17): the time
# from "password accepted" to "approved, two-factor session issued" through the core
# (bench/src/bin/duo_push_round_trip.rs: Authorizer::login_push on a one-factor session,
# as the portal's push page drives it) against the same Auth API calls made straight with
# the client (ping, preauth, auth, auth_status): the stand-in's own round trip. The
# stand-in (crates/duo/tests/standin.py, which verifies every signature) answers the push
# at once (--push-delay 0), over HTTPS with a test CA. Pinning: the stand-in on core 1,
# the benchmark on core 0. Needs python3-aiohttp, openssl, taskset.
# Usage: bash bench/duo.sh [--rows]
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

rows_only=false
[ "${1:-}" = "--rows" ] && rows_only=true
ROUNDS=${BENCH_DUO_ROUNDS:-200}

log() { echo "duo.sh: $*" >&2; }
die() { log "$*"; exit 1; }

for tool in openssl /usr/bin/python3 taskset; do
  command -v "$tool" >/dev/null || die "$tool is missing (apt-get install openssl python3-aiohttp util-linux)"
done
/usr/bin/python3 -c 'import aiohttp' 2>/dev/null || die "python3-aiohttp is missing (apt-get install python3-aiohttp)"

log "building (release)"
cargo build --release -q -p portcullis >&2
cargo build --release -q -p portcullis-bench --bin duo_push_round_trip >&2
target=${CARGO_TARGET_DIR:-$repo/target}

work=$(mktemp -d)
pid=
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
  [ -n "$pid" ] && wait "$pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A test CA and the stand-in's certificate (as crates/duo/tests/standin_harness does).
ec=(-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes)
(cd "$work" &&
  openssl req -x509 "${ec[@]}" -subj "/CN=bench Duo CA" -days 2 -keyout ca.key -out ca.pem &&
  openssl req "${ec[@]}" -subj /CN=localhost -keyout key.pem -out server.csr &&
  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >ext.cnf &&
  openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile ext.cnf -out cert.pem
) >/dev/null 2>&1 || die "openssl could not make the certificates"
ikey=DIWJ8X6AEYOR5OMC6TQ1
printf '%s\n' Zh5eGmUq9zpfQnyUIu5OL9iWoMMv5ZNmk3zLJ4Ep >"$work/skey"
coproc STANDIN { exec taskset -c 1 /usr/bin/python3 "$repo/crates/duo/tests/standin.py" --cert "$work/cert.pem" \
  --key "$work/key.pem" --ikey "$ikey" --skey-file "$work/skey" --port 0 --push-delay 0; }
pid=$STANDIN_PID
read -r word port <&"${STANDIN[0]}" || die "the stand-in did not start"
[ "$word" = listening ] || die "the stand-in said: $word $port"

"$target/release/portcullis" init --dir "$work/gw" >/dev/null
cat >>"$work/gw/portcullis.toml" <<TOML
[duo]
api_host = "localhost:$port"
integration_key = "$ikey"
secret_key_file = "$work/skey"
ca_file = "$work/ca.pem"
TOML

log "$ROUNDS push logins, each next to the same Auth API calls made straight"
out=$(taskset -c 0 "$target/release/duo_push_round_trip" "$work/gw/portcullis.toml" "$ROUNDS")
val() { sed -n "s/^$1=//p" <<<"$out"; }
row="| Duo push login, password accepted → two-factor session (stand-in answers at once) | $(val portcullis_ms) ms | the stand-in's own round trip (ping, preauth, auth, auth_status) $(val stand_in_ms) ms | $(val ratio)× |"
if $rows_only; then
  echo "$row"
else
  echo "$out"
  echo "$row"
fi
