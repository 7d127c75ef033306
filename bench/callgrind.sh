#!/usr/bin/env bash
# Instructions per check (issue 19): the gateway answering auth-request with a valid session,
# and the bare hyper server answering 204, each under `valgrind --tool=callgrind` with
# collection switched on (callgrind_control) only once the server is up and, for the
# gateway, signed in: N requests on one kept-alive connection (curl, many URLs at once), so
# instructions per request = the collected total / N. Instructions, not seconds: the same
# binary and inputs give the same count whatever else the machine does. Writes
# bench/profiles/MODE-NAME.txt (check-NAME.txt by default: the totals and callgrind_annotate's
# top functions) and prints one line per server.
# Usage: bash bench/callgrind.sh NAME   (e.g. before, after-mimalloc); BENCH_CALLGRIND_KEEP=DIR
# keeps the raw callgrind files there (for callgrind_annotate --inclusive=yes);
# BENCH_CALLGRIND_MODE=proxy counts reverse-proxy mode instead (GET /x with the session,
# forwarded to a bare hyper server outside valgrind), the bare server then counted as the app;
# BENCH_CALLGRIND_MODE=anon the same auth-request without a session (the 401 with the
# portal's URL every anonymous request gets).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
name=${1:?usage: bash bench/callgrind.sh NAME}
N=${BENCH_CALLGRIND_N:-2000}
mode=${BENCH_CALLGRIND_MODE:-check}

log() { echo "callgrind.sh: $*" >&2; }
die() { log "$*"; exit 1; }
for tool in valgrind callgrind_annotate callgrind_control curl python3; do
  command -v "$tool" >/dev/null || die "$tool is missing (apt-get install valgrind curl python3)"
done

log "building (release)"
cargo build --release -q -p portcullis -p portcullis-bench --bin portcullis --bin bare_hyper >&2
target=${CARGO_TARGET_DIR:-$repo/target}
bin=$target/release/portcullis
bare=$target/release/bare_hyper

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
. "$repo/bench/lib.sh"

# A user with a session, made through the portal (as bench/gateway.sh does).
cfgdir=$work/pc
"$bin" init --dir "$cfgdir" >/dev/null
cfg=$cfgdir/portcullis.toml
secret=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP
password='bench password 1'
printf '%s\n' "$password" | "$bin" -c "$cfg" user add bench --password-stdin --secret "$secret" \
  --group users --no-terminal-qr >/dev/null

# curl's config: N URLs with the headers of an nginx subrequest, one connection.
requests() {
  local n=$1 url=$2 cookie=$3 f=$work/curl-$n.cfg
  : >"$f"
  for _ in $(seq "$n"); do
    printf 'url = "%s"\noutput = "/dev/null"\n' "$url" >>"$f"
  done
  curl -s -K "$f" -H "X-Original-URL: http://127.0.0.1/x" ${cookie:+-H "Cookie: portcullis_session=$cookie"}
}

# run SERVER N: starts it under callgrind, signs in when it is the gateway, sends N
# requests, stops it; prints the instruction total.
run() {
  local which=$1 n=$2 port out sid=""
  port=$(free_port)
  out=$work/$which-$n.out
  if [ "$which" = portcullis ]; then
    sed -e "s|^listen = \"127.0.0.1:9091\"|listen = \"127.0.0.1:$port\"|" -e "s|^secure = true |secure = false|" \
      -e "s|http://127.0.0.1:9091|http://127.0.0.1:$port|g" "$cfg" >"$cfgdir/run.toml"
    if [ "$mode" = proxy ]; then
      local app_port; app_port=$(free_port)
      "$bare" "127.0.0.1:$app_port" >"$work/app.log" 2>&1 &
      pids+=("$!")
      sed -i -e "s|^upstream = \"\"|upstream = \"http://127.0.0.1:$app_port\"|" \
        -e "s|^portal_url = \"http://127.0.0.1:$port\"|portal_url = \"http://127.0.0.1:$port/.portcullis\"|" "$cfgdir/run.toml"
      grep -q "^upstream = \"http://127.0.0.1:$app_port\"" "$cfgdir/run.toml" || die "could not set [proxy] upstream"
    fi
    RUST_LOG=warn valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$out" "$bin" -c "$cfgdir/run.toml" serve \
      >"$work/$which.log" 2>&1 &
  else
    valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$out" "$bare" "127.0.0.1:$port" >"$work/$which.log" 2>&1 &
  fi
  local pid=$!; pids+=("$pid")
  local app_url=http://127.0.0.1:$port url=http://127.0.0.1:$port
  [ "$which" = portcullis ] && [ "$mode" = proxy ] && url=$app_url/.portcullis
  for _ in $(seq 600); do curl -s -o /dev/null "$url/api/health" && break; sleep 0.1; done
  if [ "$which" = portcullis ]; then
    local jar=$work/jar-$n csrf status
    csrf=$(curl -sf -c "$jar" "$url/login" | csrf_of)
    status=$(curl -s -o /dev/null -w '%{http_code}' -b "$jar" -c "$jar" --data-urlencode "csrf=$csrf" \
      --data-urlencode username=bench --data-urlencode "password=$password" --data-urlencode rd= "$url/login")
    [ "$status" = 303 ] || die "password step answered $status"
    csrf=$(curl -sf -b "$jar" -c "$jar" "$url/login/code" | csrf_of)
    status=$(curl -s -o /dev/null -w '%{http_code}' -b "$jar" -c "$jar" --data-urlencode "csrf=$csrf" \
      --data-urlencode "code=$("$bin" otp code --secret "$secret")" --data-urlencode rd= "$url/login/code")
    [ "$status" = 303 ] || die "code step answered $status"
    sid=$(awk '$6=="portcullis_session"{print $7}' "$jar" | tail -n1)
    [ "$(curl -s -o /dev/null -w '%{http_code}' -H "Cookie: portcullis_session=$sid" \
      -H "X-Original-URL: http://127.0.0.1/x" "$url/api/authz/auth-request")" = 200 ] || die "the session does not pass"
  fi
  callgrind_control -i on "$pid" >/dev/null 2>&1
  if [ "$mode" = proxy ]; then
    requests "$n" "$app_url/x" "$sid"
  elif [ "$mode" = anon ]; then
    requests "$n" "$url/api/authz/auth-request" ""
  else
    requests "$n" "$url/api/authz/auth-request" "$sid"
  fi
  callgrind_control -i off "$pid" >/dev/null 2>&1
  kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
  awk '/^totals:/{print $2}' "$out"
}

profile=$repo/bench/profiles/$mode-$name.txt
{
  echo "# bash bench/callgrind.sh $name — $(date -u +%Y-%m-%d), $(git -C "$repo" rev-parse --short HEAD)"
  echo "# instructions per request = instructions collected over $N requests on one kept-alive connection / $N"
} >"$profile"
for which in portcullis bare; do
  log "$which: $N requests under callgrind"
  total=$(run "$which" "$N")
  echo "$which: $(( total / N )) instructions per request ($total for $N)" | tee -a "$profile"
done
for which in portcullis bare; do
  {
    echo
    echo "## $which: the top functions (self cost) over the $N requests"
    callgrind_annotate --threshold=90 "$work/$which-$N.out" 2>/dev/null | sed -n '/^Ir  *file:function/,$p' | sed -n '1,45p'
  } >>"$profile"
done
if [ -n "${BENCH_CALLGRIND_KEEP:-}" ]; then mkdir -p "$BENCH_CALLGRIND_KEEP" && cp "$work"/*.out "$BENCH_CALLGRIND_KEEP"/; fi
log "wrote $profile"
