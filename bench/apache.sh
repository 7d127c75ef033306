#!/usr/bin/env bash
# Apache benchmarks, measured in one run, each against references from the same run: wrk
# against Debian's Apache 2.4 (mpm_event) serving one small static file
#   1. with no authentication (the ceiling of Apache itself);
#   2. behind a trivial FastCGI authorizer that always says 200 (bench/src/bin/
#      trivial_authorizer.rs: the ceiling of the mod_authnz_fcgi mechanism);
#   3. behind portcullis in cookie mode (the shipped contrib/apache/portcullis-protect.conf);
#   4. behind portcullis in Basic mode, password+code (portcullis-protect-basic.conf; the
#      client resends the same header, as WebDAV clients do, so linger answers);
#   5. behind mod_authnz_external running `portcullis check` (one process per request;
#      the check asks the gateway over [apache] check_socket).
# The trivial authorizer and cookie mode are measured twice, alternating, best of each.
# Pinning as in bench/gateway.sh: Apache, portcullis and the trivial authorizer on core 0,
# wrk on core 1. Needs apache2, libapache2-mod-authnz-external, wrk, curl, python3.
# Usage: bash bench/apache.sh [--rows]
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

rows_only=false
[ "${1:-}" = "--rows" ] && rows_only=true
DURATION=${BENCH_DURATION:-10}
CONNS=${BENCH_CONNECTIONS:-32}
SERVER_CPU=0
CLIENT_CPU=1
MODULES=/usr/lib/apache2/modules

log() { echo "apache.sh: $*" >&2; }
die() { log "$*"; exit 1; }

for tool in wrk curl python3 taskset apache2; do
  command -v "$tool" >/dev/null || die "$tool is missing (bench/run.sh installs apache2 and wrk)"
done
[ -e "$MODULES/mod_authnz_external.so" ] || die "libapache2-mod-authnz-external is missing"
[ "$(nproc --all)" -ge 2 ] || die "needs 2 cores"

log "building (release)"
cargo build --release -q -p portcullis -p portcullis-bench --bins >&2
target=${CARGO_TARGET_DIR:-$repo/target}
bin=$target/release/portcullis
trivial=$target/release/trivial_authorizer

work=$(mktemp -d)
chmod 755 "$work" # Apache's children (www-data) read the site and run `portcullis check`
pids=()
cleanup() {
  [ -f "$work/apache/httpd.pid" ] && kill "$(cat "$work/apache/httpd.pid")" 2>/dev/null || true
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

. "$repo/bench/lib.sh"

wait_port() {
  for _ in $(seq 100); do
    python3 -c "import socket,sys; socket.create_connection(('127.0.0.1',int(sys.argv[1])),1)" "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  die "nothing listens on port $1"
}

# --- portcullis: a user, the FastCGI authorizer and the check socket ----------------------
cfgdir=$work/pc
gw_port=$(free_port); fcgi_port=$(free_port); trivial_port=$(free_port); web_port=$(free_port)
"$bin" init --dir "$cfgdir" >/dev/null
chmod 755 "$cfgdir"
cfg=$cfgdir/portcullis.toml
sed -i \
  -e "s|^listen = \"127.0.0.1:9091\"|listen = \"127.0.0.1:$gw_port\"|" \
  -e "s|^secure = true |secure = false|" \
  -e "s|http://127.0.0.1:9091|http://127.0.0.1:$gw_port|g" \
  -e "s|^fastcgi_listen = \"\"|fastcgi_listen = \"127.0.0.1:$fcgi_port\"|" \
  -e "s|^check_socket = \"\"|check_socket = \"$cfgdir/check.sock\"|" \
  -e "s|^protected_domains = .*|protected_domains = [\"127.0.0.1\"]|" \
  "$cfg"
grep -q "^fastcgi_listen = \"127.0.0.1:$fcgi_port\"" "$cfg" || die "could not set [apache] fastcgi_listen"
"$bin" -c "$cfg" config check >/dev/null
secret=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP
password='bench password 1'
printf '%s\n' "$password" | "$bin" -c "$cfg" user add bench --password-stdin --secret "$secret" --no-terminal-qr >/dev/null
chown -R www-data:www-data "$cfgdir"
RUST_LOG=warn taskset -c $SERVER_CPU "$bin" -c "$cfg" serve >"$work/gateway.log" 2>&1 &
pids+=("$!")
wait_port "$gw_port"; wait_port "$fcgi_port"
chgrp www-data "$cfgdir/check.sock"
taskset -c $SERVER_CPU "$trivial" "127.0.0.1:$trivial_port" &
pids+=("$!")
wait_port "$trivial_port"
gw=http://127.0.0.1:$gw_port

jar=$work/cookies
csrf=$(curl -sf -c "$jar" "$gw/login" | csrf_of)
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

# --- Apache: one site, a location per variant, the shipped snippets ----------------------
ap=$work/apache
mkdir -p "$ap/site"/{none,trivial,cookie,basic,ext}
for d in none trivial cookie basic ext; do
  printf '<!doctype html><title>protected</title><p>Hello, you are signed in.</p>\n' >"$ap/site/$d/index.html"
done
chmod -R a+rX "$ap"
for f in contrib/apache/*.conf; do
  sed -e "s|127.0.0.1:9092|127.0.0.1:$fcgi_port|" -e "s|/usr/local/bin/portcullis|$bin|" \
    -e "s|/etc/portcullis/portcullis.toml|$cfg|" "$f" >"$ap/$(basename "$f")"
done
loads=""
for m in mpm_event:mod_mpm_event authn_core:mod_authn_core authz_core:mod_authz_core \
  auth_basic:mod_auth_basic authz_user:mod_authz_user authnz_fcgi:mod_authnz_fcgi \
  authnz_external:mod_authnz_external mime:mod_mime dir:mod_dir unixd:mod_unixd headers:mod_headers; do
  loads+="<IfModule !${m%%:*}_module>
LoadModule ${m%%:*}_module $MODULES/${m#*:}.so
</IfModule>
"
done
cat >"$ap/httpd.conf" <<EOF
$loads
ServerRoot $ap
ServerName 127.0.0.1
Listen 127.0.0.1:$web_port
PidFile $ap/httpd.pid
ErrorLog $ap/error.log
LogLevel warn
User www-data
Group www-data
StartServers 1
ServerLimit 2
ThreadsPerChild 64
MaxRequestWorkers 128
TypesConfig /etc/mime.types
DocumentRoot $ap/site
DirectoryIndex index.html
KeepAliveTimeout 5
MaxKeepAliveRequests 0
Include $ap/portcullis-provider.conf
Include $ap/portcullis-external.conf
AuthnzFcgiDefineProvider authn trivial fcgi://127.0.0.1:$trivial_port/
<Location "/none/">
    Require all granted
</Location>
<Location "/trivial/">
    AuthnzFcgiCheckAuthnProvider trivial Authoritative On RequireBasicAuth Off UserExpr "%{reqenv:PORTCULLIS_USER}"
    Require valid-user
</Location>
<Location "/cookie/">
    Include $ap/portcullis-protect.conf
</Location>
<Location "/basic/">
    Include $ap/portcullis-protect-basic.conf
</Location>
<Location "/ext/">
    Include $ap/portcullis-protect-external.conf
</Location>
EOF
apache2 -t -f "$ap/httpd.conf" 2>"$work/apache-t.log" || die "apache2 -t failed: $(cat "$work/apache-t.log")"
# Its own session: prefork signals its whole process group when it stops.
setsid taskset -c $SERVER_CPU apache2 -f "$ap/httpd.conf" -DFOREGROUND &
pids+=("$!")
wait_port "$web_port"
web=http://127.0.0.1:$web_port
# The login above used $code up: Basic sends the next step's (inside the ±1 window), which
# then lingers for the load.
next=$("$bin" otp code --secret "$secret" --time $(( $(date +%s) + 30 )))
basic="Authorization: Basic $(printf 'bench:%s%s' "$password" "$next" | base64 -w0)"
[ "$(page "$web/cookie/")" = 302 ] || die "cookie mode without a session is not 302"
[ "$(page -H "Cookie: portcullis_session=$sid" "$web/cookie/")" = 200 ] || die "cookie mode with the session is not 200"
[ "$(page "$web/trivial/")" = 200 ] || die "the trivial authorizer does not let in"
[ "$(page -H "$basic" "$web/basic/")" = 200 ] || die "Basic password+code is not 200: $(tail -3 "$work/gateway.log")"
[ "$(page -H "$basic" "$web/ext/")" = 200 ] || die "mod_authnz_external is not 200: $(tail -3 "$ap/error.log")"

run_wrk none "$web/none/"
# The reference and cookie mode alternate twice and the better run of each counts: on a
# shared machine one noisy run otherwise decides the ratio.
for i in 1 2; do
  run_wrk "trivial-$i" "$web/trivial/"
  run_wrk "cookie-$i" "$web/cookie/" -H "Cookie: portcullis_session=$sid"
done
best trivial
best cookie
run_wrk basic "$web/basic/" -H "$basic"
run_wrk ext "$web/ext/" -H "$basic"
read -r n_rps n_p50 n_p99 _ _ n_cpu <"$work/none.res"
read -r t_rps t_p50 t_p99 _ _ t_cpu <"$work/trivial.res"
read -r c_rps c_p50 c_p99 _ _ c_cpu <"$work/cookie.res"
read -r b_rps b_p50 b_p99 _ _ b_cpu <"$work/basic.res"
read -r e_rps e_p50 e_p99 _ _ e_cpu <"$work/ext.res"

if ! $rows_only; then
  echo "| measurement | portcullis | reference (same run) | ratio |"
  echo "|---|---|---|---|"
fi
echo "| Apache mod_authnz_fcgi cookie mode + static file: req/s | $c_rps | trivial FastCGI authorizer (always 200): $t_rps | $(ratio "$c_rps" "$t_rps") |"
echo "| Apache cookie mode: p50 / p99 ms | $c_p50 / $c_p99 | $t_p50 / $t_p99 | |"
echo "| Apache Basic password+code (mod_authnz_fcgi, linger): req/s | $b_rps | trivial FastCGI authorizer: $t_rps | $(ratio "$b_rps" "$t_rps") |"
echo "| Apache Basic: p50 / p99 ms | $b_p50 / $b_p99 | | |"
echo "| Apache mod_authnz_external pipe, portcullis check via socket: req/s | $e_rps | trivial FastCGI authorizer: $t_rps | $(ratio "$e_rps" "$t_rps") |"
echo "| Apache mod_authnz_external: p50 / p99 ms | $e_p50 / $e_p99 | | |"
echo "| Apache static file, no authentication: req/s (p50 / p99 ms) | | $n_rps ($n_p50 / $n_p99) | cookie mode: $(ratio "$c_rps" "$n_rps") |"
echo "| Apache: CPU µs per request on the server core (Apache + authorizer + forked checks) | cookie $c_cpu, Basic $b_cpu, external pipe $e_cpu | trivial authorizer $t_cpu, no authentication $n_cpu | cookie: $(ratio "$c_cpu" "$t_cpu") |"
