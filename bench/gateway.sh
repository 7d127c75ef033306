#!/usr/bin/env bash
# Gateway benchmarks, all measured in one run on this machine, each against a reference
# measured in the same run:
#   1. wrk on /api/authz/auth-request (valid session) vs a bare hyper server answering 204;
#   1b. the same without a session (the 401 with the portal's URL) vs the same bare server;
#   2. nginx auth_request -> portcullis vs nginx auth_request -> the bare 204 server (the
#      ceiling of the mechanism), protecting a small static file;
#   2b. reverse-proxy mode (a valid session, the bare server as the app) vs nginx
#      proxy_pass with a keepalive upstream to the same bare server;
#   3. memory per active session (in-process session table; SQLite bytes on disk);
#   4. logins per second per core (argon2id, full Gate check) and the gateway's RSS under
#      a flood of 200 concurrent wrong-password logins.
# Each pair of measurements alternates twice and takes the better run of each side.
# Pinning: every server (portcullis, bare hyper, nginx's single worker) on core 0 with
# `taskset -c 0`, wrk on core 1 (`taskset -c 1`). Needs wrk, nginx, curl, python3 and
# at least 2 cores. Usage: bash bench/gateway.sh [--rows]   (--rows: table rows only,
# for bench/run.sh). Progress goes to stderr, the table to stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

rows_only=false
[ "${1:-}" = "--rows" ] && rows_only=true
DURATION=${BENCH_DURATION:-10}   # seconds per measurement (after a 2 s warm-up)
CONNS=${BENCH_CONNECTIONS:-32}
SERVER_CPU=0
CLIENT_CPU=1

log() { echo "gateway.sh: $*" >&2; }
die() { log "$*"; exit 1; }

nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)
for tool in wrk curl python3 taskset; do
  command -v "$tool" >/dev/null || die "$tool is missing (bench/run.sh installs wrk and nginx)"
done
[ -x "$nginx_bin" ] || die "nginx is missing (bench/run.sh installs it)"
[ "$(nproc --all)" -ge 2 ] || die "needs 2 cores: servers on core $SERVER_CPU, wrk on core $CLIENT_CPU"

log "building (release)"
cargo build --release -q -p portcullis -p portcullis-bench --bins >&2
target=${CARGO_TARGET_DIR:-$repo/target}
bin=$target/release/portcullis
bare=$target/release/bare_hyper

work=$(mktemp -d)
chmod 755 "$work" # nginx's worker (nobody, when started as root) reads $work/www
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

. "$repo/bench/lib.sh"

rss_kb() { awk -v k="$2:" '$1==k{print $2}' "/proc/$1/status"; }
mib() { python3 -c "print(f'{$1/1024:.1f}')"; }

# --- the gateway: a user with password and TOTP, logged in through the portal -------------
cfgdir=$work/pc
gw_port=$(free_port)
"$bin" init --dir "$cfgdir" >/dev/null
cfg=$cfgdir/portcullis.toml
sed -i \
  -e "s|^listen = \"127.0.0.1:9091\"|listen = \"127.0.0.1:$gw_port\"|" \
  -e "s|^secure = true |secure = false|" \
  -e "s|http://127.0.0.1:9091|http://127.0.0.1:$gw_port|g" \
  "$cfg"
grep -q "^listen = \"127.0.0.1:$gw_port\"" "$cfg" && grep -q '^secure = false' "$cfg" \
  || die "could not set [server] listen / [session] secure in $cfg"
"$bin" -c "$cfg" config check >/dev/null
# The login flood needs every attempt to reach argon2 (a distributed attack, from many
# addresses): the same store, regulation off, on its own port and in its own process.
flood_port=$(free_port)
sed -e "s|^listen = \"127.0.0.1:$gw_port\"|listen = \"127.0.0.1:$flood_port\"|" \
  -e "s|^max_retries = 5 |max_retries = 0 |" "$cfg" >"$cfgdir/flood.toml"
grep -q '^max_retries = 0 ' "$cfgdir/flood.toml" || die "could not turn regulation off in flood.toml"

secret=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP
password='bench password 1'
printf '%s\n' "$password" | "$bin" -c "$cfg" user add bench --password-stdin --secret "$secret" \
  --group users --display-name "Bench User" --email bench@example.com --no-terminal-qr >/dev/null

RUST_LOG=warn taskset -c $SERVER_CPU "$bin" -c "$cfg" serve >"$work/gateway.log" 2>&1 &
gw_pid=$!; pids+=("$gw_pid")
gw=http://127.0.0.1:$gw_port
wait_http "$gw/api/health"

jar=$work/cookies
csrf=$(curl -sf -c "$jar" "$gw/login" | csrf_of)
[ -n "$csrf" ] || die "no CSRF token on $gw/login"
status=$(curl -s -o /dev/null -w '%{http_code}' -b "$jar" -c "$jar" --data-urlencode "csrf=$csrf" \
  --data-urlencode username=bench --data-urlencode "password=$password" --data-urlencode rd= "$gw/login")
[ "$status" = 303 ] || die "password step answered $status, not 303"
csrf=$(curl -sf -b "$jar" -c "$jar" "$gw/login/code" | csrf_of)
code=$("$bin" otp code --secret "$secret")
status=$(curl -s -o /dev/null -w '%{http_code}' -b "$jar" -c "$jar" --data-urlencode "csrf=$csrf" \
  --data-urlencode "code=$code" --data-urlencode rd= "$gw/login/code")
[ "$status" = 303 ] || die "code step answered $status, not 303"
sid=$(awk '$6=="portcullis_session"{print $7}' "$jar" | tail -n1)
[ -n "$sid" ] || die "no session cookie after the login"
authz() { curl -s -o /dev/null -w '%{http_code}' "$@" -H "X-Original-URL: http://127.0.0.1/x" "$gw/api/authz/auth-request"; }
[ "$(authz -H "Cookie: portcullis_session=$sid")" = 200 ] || die "auth-request with the session is not 200"
[ "$(authz)" = 401 ] || die "auth-request without a session is not 401"
log "logged in through the portal; session cookie works"

bare_port=$(free_port)
taskset -c $SERVER_CPU "$bare" "127.0.0.1:$bare_port" 2>"$work/bare.log" &
pids+=("$!")
bare_url=http://127.0.0.1:$bare_port
wait_http "$bare_url/"

# --- 1. direct: auth-request vs bare hyper ------------------------------------------------
# Just after the login, the login's argon2 work area (19 MiB) is still kept for the next;
# idle, the gateway gives it back within 10 s.
rss_login=$(rss_kb "$gw_pid" VmRSS)
sleep 11
rss_idle=$(rss_kb "$gw_pid" VmRSS)
pair direct-portcullis direct-bare "$gw/api/authz/auth-request" "$bare_url/api/authz/auth-request" \
  -H "Cookie: portcullis_session=$sid" -H "X-Original-URL: http://127.0.0.1/x"
rss_loaded=$(rss_kb "$gw_pid" VmRSS)
read -r d_rps d_p50 d_p99 _ <"$work/direct-portcullis.res"
read -r b_rps b_p50 b_p99 _ <"$work/direct-bare.res"

# --- 1b. no session: the 401 (with the portal's URL) every anonymous request gets ----------
allow_non2xx=1 pair anon-portcullis anon-bare "$gw/api/authz/auth-request" "$bare_url/api/authz/auth-request" \
  -H "X-Original-URL: http://127.0.0.1/x"
read -r a_rps a_p50 a_p99 _ <"$work/anon-portcullis.res"
read -r ab_rps ab_p50 ab_p99 _ <"$work/anon-bare.res"

# --- 2. nginx auth_request -> portcullis | bare, protecting a static file ----------------
ngx=$work/nginx
mkdir -p "$ngx/tmp" "$work/www"
printf '<!doctype html><title>protected</title><p>Hello, you are signed in.</p>\n' >"$work/www/index.html"
chmod 755 "$work/www"; chmod 644 "$work/www/index.html"
# The shipped snippets, as a user installs them: only the upstream's port changes. The
# reference site uses the same snippets with the upstream renamed to the bare server.
sed "s|127.0.0.1:9091|127.0.0.1:$gw_port|" contrib/nginx/portcullis-upstream.conf >"$ngx/upstream-portcullis.conf"
sed -e "s|127.0.0.1:9091|127.0.0.1:$bare_port|" -e "s|upstream portcullis|upstream portcullis_bare|" \
  contrib/nginx/portcullis-upstream.conf >"$ngx/upstream-bare.conf"
cp contrib/nginx/portcullis-authrequest.conf "$ngx/authrequest-portcullis.conf"
sed "s|http://portcullis/|http://portcullis_bare/|" contrib/nginx/portcullis-authrequest.conf >"$ngx/authrequest-bare.conf"
grep -q "127.0.0.1:$gw_port;" "$ngx/upstream-portcullis.conf" || die "could not set the upstream port in the snippet"
grep -q "portcullis_bare/" "$ngx/authrequest-bare.conf" || die "could not point the reference site at the bare server"
ngx_a=$(free_port); ngx_b=$(free_port); ngx_c=$(free_port)
{ nginx_head 1; cat <<EOF; } >"$ngx/nginx.conf"
    include $ngx/upstream-portcullis.conf;
    include $ngx/upstream-bare.conf;
$(nginx_site "$ngx_a" authrequest-portcullis.conf "$gw")
$(nginx_site "$ngx_b" authrequest-bare.conf "$gw")
    server {
        listen 127.0.0.1:$ngx_c;
        location / {
            proxy_pass http://portcullis_bare;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host \$host;
        }
    }
}
EOF
"$nginx_bin" -t -p "$ngx" -c "$ngx/nginx.conf" -e "$ngx/error.log" 2>"$work/nginx-t.log" \
  || die "nginx -t failed: $(cat "$work/nginx-t.log")"
taskset -c $SERVER_CPU "$nginx_bin" -p "$ngx" -c "$ngx/nginx.conf" -e "$ngx/error.log" &
pids+=("$!")
wait_http "http://127.0.0.1:$ngx_a/"
[ "$(page -H "Cookie: portcullis_session=$sid" "http://127.0.0.1:$ngx_a/")" = 200 ] || die "nginx -> portcullis: the page is not 200 with a session"
[ "$(page "http://127.0.0.1:$ngx_a/")" = 302 ] || die "nginx -> portcullis: the page is not 302 (to the portal) without a session"
[ "$(page "http://127.0.0.1:$ngx_b/")" = 200 ] || die "nginx -> bare: the page is not 200"
pair nginx-portcullis nginx-bare "http://127.0.0.1:$ngx_a/" "http://127.0.0.1:$ngx_b/" \
  -H "Cookie: portcullis_session=$sid"
read -r n_rps n_p50 n_p99 _ <"$work/nginx-portcullis.res"
read -r c_rps c_p50 c_p99 _ <"$work/nginx-bare.res"

# --- 2b. reverse-proxy mode vs nginx proxy_pass, both in front of the bare server ----------
# A second gateway on the same store (the session is loaded at start), in proxy mode.
px_port=$(free_port)
sed -e "s|^listen = \"127.0.0.1:$gw_port\"|listen = \"127.0.0.1:$px_port\"|" \
  -e "s|^portal_url = \"http://127.0.0.1:$gw_port\"|portal_url = \"http://127.0.0.1:$px_port/.portcullis\"|" \
  -e "s|^upstream = \"\"|upstream = \"http://127.0.0.1:$bare_port\"|" "$cfg" >"$cfgdir/proxy.toml"
grep -q "^upstream = \"http://127.0.0.1:$bare_port\"" "$cfgdir/proxy.toml" || die "could not set [proxy] upstream"
RUST_LOG=warn taskset -c $SERVER_CPU "$bin" -c "$cfgdir/proxy.toml" serve >"$work/proxy.log" 2>&1 &
pids+=("$!")
px=http://127.0.0.1:$px_port
wait_http "$px/.portcullis/api/health"
[ "$(page -H "Cookie: portcullis_session=$sid" "$px/x")" = 204 ] || die "proxy mode: the app's 204 does not come through with a session"
[ "$(page "$px/x")" = 401 ] || die "proxy mode: no session is not 401"
[ "$(page "http://127.0.0.1:$ngx_c/x")" = 204 ] || die "nginx proxy_pass -> bare is not 204"
pair proxy-portcullis proxy-nginx "$px/x" "http://127.0.0.1:$ngx_c/x" -H "Cookie: portcullis_session=$sid"
read -r p_rps p_p50 p_p99 _ <"$work/proxy-portcullis.res"
read -r q_rps q_p50 q_p99 _ <"$work/proxy-nginx.res"

# --- 3. memory per session (in-process table) and SQLite bytes per session ----------------
log "session memory (100k sessions in-process)"
taskset -c $SERVER_CPU "$target/release/session_memory" 100000 20 >"$work/mem.txt"
val() { sed -n "s/^$2=//p" "$1"; }

# --- 4. logins per second per core, and RSS under a login flood --------------------------
log "login rate (argon2id, Gate)"
taskset -c $SERVER_CPU "$target/release/login_rate" 5 >"$work/login.txt"

# flood NAME [VAR=value...]: a fresh flood gateway (with that environment), 200 concurrent
# wrong-password logins for $DURATION s; writes "logins/s rss_before peak rss_after threads"
# (kB) to $work/NAME.res.
flood_conns=200
flood() {
  local name=$1; shift
  env "$@" RUST_LOG=warn taskset -c $SERVER_CPU "$bin" -c "$cfgdir/flood.toml" serve >"$work/$name.log" 2>&1 &
  local pid=$!; pids+=("$pid")
  local fl=http://127.0.0.1:$flood_port fjar=$work/$name-cookies
  wait_http "$fl/api/health"
  local fcsrf nonce
  fcsrf=$(curl -sf -c "$fjar" "$fl/login" | csrf_of)
  nonce=$(awk '$6=="portcullis_csrf"{print $7}' "$fjar")
  [ -n "$fcsrf" ] && [ -n "$nonce" ] || die "no CSRF token/cookie on $fl/login"
  [ "$(page -b "$fjar" --data-urlencode "csrf=$fcsrf" -d 'username=bench&password=wrong&rd=' "$fl/login")" = 401 ] \
    || die "a wrong password is not answered 401"
  cat >"$work/$name.lua" <<EOF
wrk.method = "POST"
wrk.body = "csrf=$fcsrf&username=bench&password=wrong+password&rd="
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Cookie"] = "portcullis_csrf=$nonce"
EOF
  local before peak after rps threads
  before=$(rss_kb "$pid" VmRSS)
  log "$name: $flood_conns connections, ${DURATION}s${*:+, with $*}"
  taskset -c $CLIENT_CPU wrk -t1 -c$flood_conns -d"${DURATION}s" --timeout 60s -s "$work/$name.lua" "$fl/login" >"$work/$name.wrk"
  peak=$(rss_kb "$pid" VmHWM)
  threads=$(awk '$1=="Threads:"{print $2}' "/proc/$pid/status")
  sleep 1
  after=$(rss_kb "$pid" VmRSS)
  rps=$(awk '$1=="Requests/sec:"{print $2}' "$work/$name.wrk")
  log "$name: $rps wrong-password logins/s; RSS $before kB -> peak $peak kB -> $after kB"
  echo "$rps $before $peak $after $threads" >"$work/$name.res"
  kill "$pid"; wait "$pid" 2>/dev/null || true
}
flood flood
read -r fl_rps fl_before fl_peak fl_after fl_threads <"$work/flood.res"
# The same with glibc's mmap threshold fixed at 1 MiB: argon2's 19 MiB block array is then
# always mmapped and unmapped, instead of staying resident in malloc arenas.
tunable=glibc.malloc.mmap_threshold=1048576
flood flood-mmap "GLIBC_TUNABLES=$tunable"
read -r fm_rps fm_before fm_peak fm_after _ <"$work/flood-mmap.res"
# The worker count and login slots the pinned gateway computes (available_parallelism).
pinned_cpus=$(taskset -c $SERVER_CPU nproc)
slots=$((pinned_cpus * 2))

# --- the table ----------------------------------------------------------------------------
if ! $rows_only; then
  echo "| measurement | portcullis | reference (same run) | ratio |"
  echo "|---|---|---|---|"
fi
echo "| auth-request, wrk -c$CONNS direct: req/s | $d_rps | bare hyper 204: $b_rps | $(ratio "$d_rps" "$b_rps") |"
echo "| auth-request direct: p50 / p99 ms | $d_p50 / $d_p99 | $b_p50 / $b_p99 | |"
echo "| auth-request without a session (401 + portal URL), wrk -c$CONNS direct: req/s | $a_rps | bare hyper 204: $ab_rps | $(ratio "$a_rps" "$ab_rps") |"
echo "| auth-request without a session: p50 / p99 ms | $a_p50 / $a_p99 | $ab_p50 / $ab_p99 | |"
echo "| nginx auth_request (shipped snippet) + static file: req/s | $n_rps | nginx auth_request → bare 204: $c_rps | $(ratio "$n_rps" "$c_rps") |"
echo "| nginx auth_request: p50 / p99 ms | $n_p50 / $n_p99 | $c_p50 / $c_p99 | |"
echo "| reverse-proxy mode (session checked) → bare 204: req/s | $p_rps | nginx proxy_pass (keepalive, no auth) → bare 204: $q_rps | $(ratio "$p_rps" "$q_rps") |"
echo "| reverse proxy: p50 / p99 ms | $p_p50 / $p_p99 | $q_p50 / $q_p99 | |"
echo "| gateway RSS just after a login → idle 11 s later → after auth-request load (MiB) | $(mib "$rss_login") → $(mib "$rss_idle") → $(mib "$rss_loaded") | | |"
echo "| in-process session table: bytes per session ($(val "$work/mem.txt" memory_sessions) sessions) | $(val "$work/mem.txt" memory_bytes_per_session) | | |"
echo "| SQLite session store: bytes on disk per session ($(val "$work/mem.txt" sqlite_sessions) sessions) | $(val "$work/mem.txt" sqlite_bytes_per_session) | | |"
echo "| SQLite session store: sessions created/s (fsync each) | $(val "$work/mem.txt" sqlite_creates_per_s) | | |"
echo "| argon2id verify_hash ($(val "$work/login.txt" argon2_phc_params)), 1 core: per s | $(val "$work/login.txt" verify_hash_per_s) | | |"
echo "| full login through Gate (argon2id + TOTP + SQLite write), 1 core: per s | $(val "$work/login.txt" gate_login_per_s) | | |"
echo "| login flood, $flood_conns conns, wrong password, gateway on 1 core: logins/s | $fl_rps | | |"
echo "| login flood: gateway RSS before → peak → after, MiB ($slots login slots, $fl_threads threads) | $(mib "$fl_before") → $(mib "$fl_peak") → $(mib "$fl_after") | with GLIBC_TUNABLES=$tunable: $(mib "$fm_before") → $(mib "$fm_peak") → $(mib "$fm_after") ($fm_rps logins/s) | |"
