# Shared by the load scripts (gateway.sh, apache.sh, state.sh, nodes.sh): sourced after each defines log, die,
# $work, $DURATION, $CONNS, $SERVER_CPU and $CLIENT_CPU.

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# wrk summary as "req/s p50_ms p99_ms non2xx errors" (latencies normalised to ms).
wrk_parse() {
  python3 - "$1" <<'PY'
import re, sys
t = open(sys.argv[1]).read()
def ms(v):
    m = re.match(r"([\d.]+)(us|ms|s|m)$", v)
    n, u = float(m.group(1)), m.group(2)
    return n * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[u]
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", t).group(1))
p50 = ms(re.search(r"^\s+50%\s+(\S+)", t, re.M).group(1))
p99 = ms(re.search(r"^\s+99%\s+(\S+)", t, re.M).group(1))
non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", t)
errs = re.search(r"Socket errors:.*", t)
print(f"{rps:.0f} {p50:.3f} {p99:.3f} {non2xx.group(1) if non2xx else 0} {'yes' if errs else 'no'}")
PY
}

# Busy time of the server core (every server, and whatever they fork, are pinned there),
# in clock ticks: user+nice+system+irq+softirq+steal of /proc/stat's cpuN line.
core_busy() { awk -v c="cpu$SERVER_CPU" '$1==c{print $2+$3+$4+$7+$8+$9}' /proc/stat; }
ticks_per_s=$(getconf CLK_TCK)

# run_wrk NAME URL [wrk args...]: 2 s warm-up, then the measurement; writes
# "req/s p50 p99 non2xx errors cpu_us_per_request" to $work/NAME.res.
run_wrk() {
  local name=$1 url=$2; shift 2
  taskset -c "$CLIENT_CPU" wrk -t1 -c"$CONNS" -d2s "$@" "$url" >/dev/null
  local busy0 busy1; busy0=$(core_busy)
  taskset -c "$CLIENT_CPU" wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency "$@" "$url" >"$work/$name.wrk"
  busy1=$(core_busy)
  local r; r=$(wrk_parse "$work/$name.wrk")
  set -- $r
  # allow_non2xx=1: refusals are what is measured (the 401 an anonymous request gets).
  [ -n "${allow_non2xx:-}" ] || [ "$4" = 0 ] || die "$name: $4 responses were not 2xx/3xx ($(cat "$work/$name.wrk"))"
  [ "$5" = no ] || log "$name: wrk reported socket errors: $(grep 'Socket errors' "$work/$name.wrk")"
  local requests cpu_us
  requests=$(awk '/requests in/{print $1}' "$work/$name.wrk")
  cpu_us=$(python3 -c "print(f'{($busy1-$busy0)*1e6/$ticks_per_s/$requests:.0f}')")
  log "$name: $1 req/s, p50 $2 ms, p99 $3 ms, $cpu_us CPU µs/request on the server core"
  echo "$r $cpu_us" >"$work/$name.res"
}

# best NAME: the .res of NAME-1 / NAME-2 with more req/s, as NAME.res.
best() {
  if [ "$(cut -d' ' -f1 "$work/$1-1.res")" -ge "$(cut -d' ' -f1 "$work/$1-2.res")" ]; then
    cp "$work/$1-1.res" "$work/$1.res"
  else
    cp "$work/$1-2.res" "$work/$1.res"
  fi
}

# pair A B URL_A URL_B [wrk args...]: A and B alternate twice and the better run of each
# counts (a noisy neighbour otherwise decides a ratio); writes $work/A.res and $work/B.res.
pair() {
  local a=$1 b=$2 url_a=$3 url_b=$4; shift 4
  for i in 1 2; do
    run_wrk "$a-$i" "$url_a" "$@"
    run_wrk "$b-$i" "$url_b" "$@"
  done
  best "$a"
  best "$b"
}

ratio() { python3 -c "print(f'{$1/$2:.2f}')"; }
csrf_of() { sed -n 's/.*name="csrf" value="\([^"]*\)".*/\1/p' | head -n1; }
page() { curl -s -o /dev/null -w '%{http_code}' "$@"; }

wait_http() { # URL: wait until it answers at all (any status)
  for _ in $(seq 100); do
    curl -s -o /dev/null "$1" && return 0
    sleep 0.1
  done
  die "nothing answers at $1"
}

# login URL USER: the portal's two steps with $password and a code of $secret (made by
# $bin); prints the session cookie's value.
login() {
  local gw=$1 user=$2 jar; jar=$(mktemp -p "$work")
  local csrf; csrf=$(curl -sf -c "$jar" "$gw/login" | csrf_of)
  [ "$(page -b "$jar" -c "$jar" --data-urlencode "csrf=$csrf" --data-urlencode "username=$user" \
    --data-urlencode "password=$password" --data-urlencode rd= "$gw/login")" = 303 ] || die "$gw: password step"
  csrf=$(curl -sf -b "$jar" -c "$jar" "$gw/login/code" | csrf_of)
  [ "$(page -b "$jar" -c "$jar" --data-urlencode "csrf=$csrf" \
    --data-urlencode "code=$("$bin" otp code --secret "$secret")" --data-urlencode rd= "$gw/login/code")" = 303 ] \
    || die "$gw: code step"
  awk '$6=="portcullis_session"{print $7}' "$jar" | tail -n1
}

# nginx_site PORT SNIPPET PORTAL: a server block protecting $work/www with the shipped
# snippets ($ngx/SNIPPET is the auth_request snippet, PORTAL the portal's URL).
nginx_site() {
  cat <<EOF
    server {
        listen 127.0.0.1:$1;
        server_name _;
        set \$portcullis_portal $3;
        include $ngx/$2;
        location / {
            include $repo/contrib/nginx/portcullis-protect.conf;
            root $work/www;
            index index.html;
        }
    }
EOF
}

# nginx_head WORKERS: the start of an nginx.conf in $ngx, up to inside `http {`.
nginx_head() {
  cat <<EOF
worker_processes $1;
daemon off;
pid $ngx/nginx.pid;
error_log $ngx/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $ngx/tmp/body;
    proxy_temp_path $ngx/tmp/proxy;
    fastcgi_temp_path $ngx/tmp/fastcgi;
    uwsgi_temp_path $ngx/tmp/uwsgi;
    scgi_temp_path $ngx/tmp/scgi;
EOF
}
