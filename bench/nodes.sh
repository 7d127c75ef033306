#!/usr/bin/env bash
# What many machines cost and give, measured in one run (issue 15):
#   1. logins per second through the Gate on PostgreSQL vs on SQLite (bench/src/bin/
#      login_rate.rs on core 0): a full login (argon2id + TOTP + the store's write) and the
#      code alone (the store's transaction is then most of the cost);
#   2. forward-auth with a valid session through nginx (the shipped snippets) over an
#      `upstream` of two gateways (round robin) vs the same nginx over one of them, both
#      gateways on one PostgreSQL directory and one Redis state server.
# Pinning: gateway A on core 0, gateway B on core 1 (a node is one core); nginx, wrk,
# PostgreSQL and redis-server float, so on a 2-core machine the load generator competes
# with the nodes (which is what limits the factor here). Needs root (PostgreSQL runs as the
# postgres user in a temp directory), postgresql, redis-server, nginx, wrk, curl, python3.
# Usage: bash bench/nodes.sh [--rows]
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

rows_only=false
[ "${1:-}" = "--rows" ] && rows_only=true
DURATION=${BENCH_DURATION:-10}
CONNS=${BENCH_CONNECTIONS:-32}
SERVER_CPU=0
CLIENT_CPU=1

log() { echo "nodes.sh: $*" >&2; }
die() { log "$*"; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root: PostgreSQL is started as the postgres user"
for tool in wrk curl python3 taskset redis-server runuser; do
  command -v "$tool" >/dev/null || die "$tool is missing (apt-get install wrk redis-server)"
done
pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)
[ -x "$pg_bin/postgres" ] || die "PostgreSQL is missing (apt-get install postgresql)"
nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)
[ -x "$nginx_bin" ] || die "nginx is missing (apt-get install nginx)"
[ "$(nproc --all)" -ge 2 ] || die "needs 2 cores: one per gateway"

log "building (release)"
cargo build --release -q -p portcullis >&2
cargo build --release -q -p portcullis-bench --bin login_rate >&2
target=${CARGO_TARGET_DIR:-$repo/target}
bin=$target/release/portcullis

work=$(mktemp -d)
chmod 755 "$work" # the postgres user and nginx's worker enter it
pids=()
cleanup() {
  # Servers started inside $(…) cannot add to pids: they leave their pid in a file.
  for f in "$work"/*.pid; do [ -f "$f" ] && pids+=("$(cat "$f")"); done
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  # runuser waits for postgres: stop the server itself.
  [ -f "$work/pg/data/postmaster.pid" ] && kill "$(head -n1 "$work/pg/data/postmaster.pid")" 2>/dev/null || true
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

. "$repo/bench/lib.sh"

# --- PostgreSQL and Redis on loopback -----------------------------------------------------
pg_port=$(free_port)
mkdir -p "$work/pg/data"
chown -R postgres:postgres "$work/pg"
runuser -u postgres -- "$pg_bin/initdb" --no-sync -A trust -U postgres -E UTF8 -D "$work/pg/data" >"$work/initdb.log" 2>&1 \
  || die "initdb failed: $(cat "$work/initdb.log")"
runuser -u postgres -- "$pg_bin/postgres" -D "$work/pg/data" -p "$pg_port" -c listen_addresses=127.0.0.1 \
  -k "$work/pg" >"$work/postgres.log" 2>&1 &
pids+=("$!")
for _ in $(seq 200); do pg_isready -q -h 127.0.0.1 -p "$pg_port" && break; sleep 0.05; done
pg_isready -q -h 127.0.0.1 -p "$pg_port" || die "PostgreSQL did not start: $(cat "$work/postgres.log")"
for db in rate nodes; do
  psql -q -h 127.0.0.1 -p "$pg_port" -U postgres -c "CREATE DATABASE $db" >/dev/null
done
pg_url() { echo "postgres://postgres@127.0.0.1:$pg_port/$1"; }

redis_port=$(free_port)
redis-server --bind 127.0.0.1 --port "$redis_port" --save "" --appendonly no --dir "$work" >"$work/redis.log" 2>&1 &
pids+=("$!")
for _ in $(seq 100); do (echo >"/dev/tcp/127.0.0.1/$redis_port") 2>/dev/null && break; sleep 0.05; done

# --- 1. logins per second: PostgreSQL vs SQLite -------------------------------------------
log "login rate (Gate on SQLite, then on PostgreSQL; 5 s each)"
BENCH_PG_URL=$(pg_url rate) taskset -c $SERVER_CPU "$target/release/login_rate" 5 >"$work/login.txt"
val() { sed -n "s/^$1=//p" "$work/login.txt"; }
for k in gate_login_per_s gate_code_per_s gate_login_postgres_per_s gate_code_postgres_per_s; do
  [ -n "$(val $k)" ] || die "login_rate printed no $k: $(cat "$work/login.txt")"
  log "$k=$(val $k)"
done

# --- 2. two nodes behind nginx vs one ---------------------------------------------------
cfgdir=$work/pc
"$bin" init --dir "$cfgdir" >/dev/null
secret=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP
password='bench password 1'
base=$cfgdir/portcullis.toml
python3 - "$base" "$(pg_url nodes)" "redis://127.0.0.1:$redis_port/0" <<'PY'
import sys
path, pg, redis = sys.argv[1:]
t = open(path).read()
t = t.replace('backend = "sqlite"', f'backend = "postgres"\nurl = "{pg}"\nsslmode = "disable"', 1)
t = t.replace('backend = "local"', f'backend = "redis"\nurl = "{redis}"', 1)
t = t.replace('secure = true ', 'secure = false ', 1)
open(path, "w").write(t)
PY
grep -q 'backend = "postgres"' "$base" && grep -q 'backend = "redis"' "$base" || die "could not point $base at PostgreSQL and Redis"
printf '%s\n' "$password" | "$bin" -c "$base" user add bench --password-stdin --secret "$secret" \
  --group users --no-terminal-qr >/dev/null

# node NAME CPU: a gateway on its own port pinned to CPU; prints its URL.
node() {
  local name=$1 cpu=$2 port; port=$(free_port)
  sed -e "s|127.0.0.1:9091|127.0.0.1:$port|g" "$base" >"$cfgdir/$name.toml"
  "$bin" -c "$cfgdir/$name.toml" config check >/dev/null || die "$name: config check failed"
  RUST_LOG=warn taskset -c "$cpu" "$bin" -c "$cfgdir/$name.toml" serve >"$work/$name.log" 2>&1 &
  echo "$!" >"$work/$name.pid"
  wait_http "http://127.0.0.1:$port/api/health"
  echo "http://127.0.0.1:$port"
}
gw_a=$(node a 0)
gw_b=$(node b 1)
sid=$(login "$gw_a" bench)
for gw in "$gw_a" "$gw_b"; do
  [ "$(page -H "Cookie: portcullis_session=$sid" -H "X-Original-URL: http://127.0.0.1/x" "$gw/api/authz/auth-request")" = 200 ] \
    || die "$gw: the session made on A is not 200 there"
done
log "a session made on A is valid on A and B"

ngx=$work/nginx
mkdir -p "$ngx/tmp" "$work/www"
printf '<!doctype html><title>protected</title><p>Hello.</p>\n' >"$work/www/index.html"
chmod 755 "$work/www"; chmod 644 "$work/www/index.html"
# The shipped snippets; the one-node site's upstream is renamed and holds A only.
sed -e "s|server 127.0.0.1:9091|server ${gw_a#http://}; server ${gw_b#http://}|" \
  contrib/nginx/portcullis-upstream.conf >"$ngx/upstream-two.conf"
sed -e "s|127.0.0.1:9091|${gw_a#http://}|" -e "s|upstream portcullis|upstream portcullis_one|" \
  contrib/nginx/portcullis-upstream.conf >"$ngx/upstream-one.conf"
cp contrib/nginx/portcullis-authrequest.conf "$ngx/authrequest-two.conf"
sed "s|http://portcullis/|http://portcullis_one/|" contrib/nginx/portcullis-authrequest.conf >"$ngx/authrequest-one.conf"
grep -q "${gw_b#http://}" "$ngx/upstream-two.conf" || die "could not put both gateways in the upstream"
grep -q "portcullis_one/" "$ngx/authrequest-one.conf" || die "could not point the one-node site at its upstream"
ngx_two=$(free_port); ngx_one=$(free_port)
{ nginx_head 2; cat <<EOF; } >"$ngx/nginx.conf"
    include $ngx/upstream-two.conf;
    include $ngx/upstream-one.conf;
$(nginx_site "$ngx_two" authrequest-two.conf "$gw_a")
$(nginx_site "$ngx_one" authrequest-one.conf "$gw_a")
}
EOF
"$nginx_bin" -t -p "$ngx" -c "$ngx/nginx.conf" -e "$ngx/error.log" 2>"$work/nginx-t.log" \
  || die "nginx -t failed: $(cat "$work/nginx-t.log")"
"$nginx_bin" -p "$ngx" -c "$ngx/nginx.conf" -e "$ngx/error.log" &
pids+=("$!")
wait_http "http://127.0.0.1:$ngx_two/"
for p in "$ngx_two" "$ngx_one"; do
  [ "$(page -H "Cookie: portcullis_session=$sid" "http://127.0.0.1:$p/")" = 200 ] || die "nginx :$p: not 200 with the session"
  [ "$(page "http://127.0.0.1:$p/")" = 302 ] || die "nginx :$p: not 302 without a session"
done

# wrk floats (two threads) like nginx: neither core is free for it.
CLIENT_CPU=0,1
# CPU time (clock ticks) the two gateways have used.
gateways_ticks() { cat "$work/a.pid" "$work/b.pid" | while read -r p; do awk '{print $14+$15}' "/proc/$p/stat"; done | awk '{s += $1} END {print s}'; }
run_two_threads() { # NAME URL: as run_wrk, with two wrk threads; adds the gateways' CPU µs/request
  local name=$1 url=$2
  taskset -c "$CLIENT_CPU" wrk -t2 -c"$CONNS" -d2s -H "Cookie: portcullis_session=$sid" "$url" >/dev/null
  local t0 t1; t0=$(gateways_ticks)
  taskset -c "$CLIENT_CPU" wrk -t2 -c"$CONNS" -d"${DURATION}s" --latency -H "Cookie: portcullis_session=$sid" "$url" >"$work/$name.wrk"
  t1=$(gateways_ticks)
  local r; r=$(wrk_parse "$work/$name.wrk")
  set -- $r
  [ "$4" = 0 ] || die "$name: $4 responses were not 2xx/3xx"
  local requests cpu_us
  requests=$(awk '/requests in/{print $1}' "$work/$name.wrk")
  cpu_us=$(python3 -c "print(f'{($t1-$t0)*1e6/$ticks_per_s/$requests:.0f}')")
  log "$name: $1 req/s, p50 $2 ms, p99 $3 ms; the gateways used $cpu_us CPU µs/request"
  echo "$r $cpu_us" >"$work/$name.res"
}
for i in 1 2; do
  run_two_threads "two-$i" "http://127.0.0.1:$ngx_two/"
  run_two_threads "one-$i" "http://127.0.0.1:$ngx_one/"
done
best two
best one
read -r t_rps _ t_p99 _ _ t_cpu <"$work/two.res"
read -r o_rps _ o_p99 _ _ o_cpu <"$work/one.res"
for n in a b; do
  if grep -q "ERROR" "$work/$n.log"; then log "node $n logged errors: $(grep -m3 ERROR "$work/$n.log")"; fi
done

rows="| full login through Gate (argon2id + TOTP + write), 1 core: per s, PostgreSQL ÷ SQLite | $(val gate_login_postgres_per_s) | SQLite: $(val gate_login_per_s) | $(ratio "$(val gate_login_postgres_per_s)" "$(val gate_login_per_s)") |
| code alone through Gate (TOTP + the store's transaction), 1 core: per s, PostgreSQL ÷ SQLite | $(val gate_code_postgres_per_s) | SQLite: $(val gate_code_per_s) | $(ratio "$(val gate_code_postgres_per_s)" "$(val gate_code_per_s)") |
| nginx auth_request, valid session, PostgreSQL + Redis: two gateways (1 core each) in one upstream ÷ one: req/s (p99 ms; gateways' CPU µs/request) | $t_rps ($t_p99; $t_cpu) | one gateway: $o_rps ($o_p99; $o_cpu) | $(ratio "$t_rps" "$o_rps") |"
if $rows_only; then echo "$rows"; else
  echo "| measurement | portcullis | reference (same run) | ratio |"
  echo "|---|---|---|---|"
  echo "$rows"
fi
