#!/usr/bin/env bash
# What a shared state server costs on the per-request path, measured in one run: wrk on
# /api/authz/auth-request with a valid session against a gateway whose sessions,
# regulation and invitations live in Redis ([state] backend = "redis") and against the
# same gateway with its state in the SQLite store (the default), both on one SQLite
# directory. Each side alternates twice and the better run counts (bench/lib.sh `pair`).
# Pinning: both gateways and redis-server on core 0 (a 2-core machine has no third core:
# Redis competes with the gateway, as on a small host), wrk on core 1. Needs wrk, curl,
# python3, redis-server. Usage: bash bench/state.sh [--rows]
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

rows_only=false
[ "${1:-}" = "--rows" ] && rows_only=true
DURATION=${BENCH_DURATION:-10}
CONNS=${BENCH_CONNECTIONS:-32}
SERVER_CPU=0
CLIENT_CPU=1

log() { echo "state.sh: $*" >&2; }
die() { log "$*"; exit 1; }

for tool in wrk curl python3 taskset redis-server; do
  command -v "$tool" >/dev/null || die "$tool is missing (apt-get install wrk redis-server)"
done
[ "$(nproc --all)" -ge 2 ] || die "needs 2 cores: servers on core $SERVER_CPU, wrk on core $CLIENT_CPU"

log "building (release)"
cargo build --release -q -p portcullis >&2
bin=${CARGO_TARGET_DIR:-$repo/target}/release/portcullis

work=$(mktemp -d)
pids=()
cleanup() {
  # Servers started inside $(…) cannot add to pids: they leave their pid in a file.
  for f in "$work"/*.pid; do [ -f "$f" ] && pids+=("$(cat "$f")"); done
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

. "$repo/bench/lib.sh"

redis_port=$(free_port)
taskset -c $SERVER_CPU redis-server --bind 127.0.0.1 --port "$redis_port" --save "" --appendonly no \
  --dir "$work" >"$work/redis.log" 2>&1 &
pids+=("$!")
for _ in $(seq 100); do (echo >"/dev/tcp/127.0.0.1/$redis_port") 2>/dev/null && break; sleep 0.05; done

cfgdir=$work/pc
"$bin" init --dir "$cfgdir" >/dev/null
secret=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP
password='bench password 1'
# One user per gateway: a code is accepted once, on either.
for user in bench-local bench-redis; do
  printf '%s\n' "$password" | "$bin" -c "$cfgdir/portcullis.toml" user add "$user" --password-stdin \
    --secret "$secret" --group users --no-terminal-qr >/dev/null
done

# start NAME [STATE-TOML]: a gateway on its own port; prints its URL.
start() {
  local name=$1 state=${2:-} port; port=$(free_port)
  local cfg=$cfgdir/$name.toml
  sed -e "s|^listen = \"127.0.0.1:9091\"|listen = \"127.0.0.1:$port\"|" \
    -e "s|^secure = true |secure = false|" \
    -e "s|http://127.0.0.1:9091|http://127.0.0.1:$port|g" \
    -e "s|^path = \"portcullis.db\"|path = \"$cfgdir/portcullis.db\"|" \
    "$cfgdir/portcullis.toml" >"$cfg"
  [ -z "$state" ] || sed -i "s|^backend = \"local\"|$state|" "$cfg"
  "$bin" -c "$cfg" config check >/dev/null || die "$name: config check failed"
  RUST_LOG=warn taskset -c $SERVER_CPU "$bin" -c "$cfg" serve >"$work/$name.log" 2>&1 &
  echo "$!" >"$work/$name.pid"
  wait_http "http://127.0.0.1:$port/api/health"
  echo "http://127.0.0.1:$port"
}

local_gw=$(start local)
redis_gw=$(start redis "backend = \"redis\"\nurl = \"redis://127.0.0.1:$redis_port/0\"")
grep -q 'backend = "redis"' "$cfgdir/redis.toml" || die "could not set [state] backend in redis.toml"
local_sid=$(login "$local_gw" bench-local)
redis_sid=$(login "$redis_gw" bench-redis)
for g in "$local_gw $local_sid" "$redis_gw $redis_sid"; do
  set -- $g
  [ "$(page -H "Cookie: portcullis_session=$2" -H "X-Original-URL: http://127.0.0.1/x" "$1/api/authz/auth-request")" = 200 ] \
    || die "$1: auth-request with the session is not 200"
done
log "signed in on both gateways"

# As bench/lib.sh `pair`, with each side's own session cookie.
for i in 1 2; do
  run_wrk "redis-state-$i" "$redis_gw/api/authz/auth-request" \
    -H "X-Original-URL: http://127.0.0.1/x" -H "Cookie: portcullis_session=$redis_sid"
  run_wrk "local-state-$i" "$local_gw/api/authz/auth-request" \
    -H "X-Original-URL: http://127.0.0.1/x" -H "Cookie: portcullis_session=$local_sid"
done
best redis-state
best local-state
read -r r_rps r_p50 r_p99 _ _ r_cpu <"$work/redis-state.res"
read -r l_rps l_p50 l_p99 _ _ l_cpu <"$work/local-state.res"
row="| forward-auth with a valid session, [state] in Redis (redis-server on the gateway's core): req/s (p99 ms; CPU µs/request) | $r_rps ($r_p99; $r_cpu) | [state] in the SQLite store: $l_rps ($l_p99; $l_cpu) | $(ratio "$r_rps" "$l_rps") |"
if $rows_only; then echo "$row"; else
  echo "| measurement | portcullis | reference (same run) | ratio |"
  echo "|---|---|---|---|"
  echo "$row"
fi
