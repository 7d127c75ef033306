#!/usr/bin/env bash
# What the LDAP first factor costs a login, measured in one run (issue 16):
#   1. full logins per second (password + TOTP + the new session with its groups, what the
#      portal's form asks the core for: bench/src/bin/ldap_login_rate.rs) with [ldap] (the
#      name searched with the service account, the password checked by a bind as the entry
#      found, the groups searched; over ldaps://) against the same logins with the local
#      argon2id first factor, each on its own SQLite store (slapd's stats log, with -d 256,
#      shows per LDAP login: one search for the person, a bind as them on a pooled
#      connection and one back as the service account, three group searches; no TLS
#      handshake, the connections are reused);
#   2. as a second reference, the raw bind rate of the same slapd: sequential `ldapwhoami -x`
#      over ldaps:// (a process, a TLS handshake and a simple bind each).
# slapd runs in a temp directory as the e2e harness starts it (crates/store/tests/
# ldap_server/mod.rs: slapd.conf + mdb, memberof overlay, a test CA, the same ACLs), seeded
# with $BENCH_LDAP_USERS people under ou=people, all in one groupOfNames; no system service.
# Pinning: slapd and ldap_login_rate on core 0 (the LDAP server competes with the gateway,
# as on a small host where both run), ldapwhoami on core 1. Needs slapd, ldap-utils,
# openssl, python3, taskset. Usage: bash bench/ldap.sh [--rows]
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

rows_only=false
[ "${1:-}" = "--rows" ] && rows_only=true
DURATION=${BENCH_DURATION:-10}
USERS=${BENCH_LDAP_USERS:-2000}
SERVER_CPU=0
CLIENT_CPU=1

log() { echo "ldap.sh: $*" >&2; }
die() { log "$*"; exit 1; }

for tool in slapd slappasswd ldapadd ldapwhoami openssl python3 taskset; do
  command -v "$tool" >/dev/null || [ -x "/usr/sbin/$tool" ] || die "$tool is missing (apt-get install slapd ldap-utils openssl)"
done
slapd_bin=$(command -v slapd || echo /usr/sbin/slapd)
[ "$(nproc --all)" -ge 2 ] || die "needs 2 cores: servers on core $SERVER_CPU, ldapwhoami on core $CLIENT_CPU"

log "building (release)"
cargo build --release -q -p portcullis >&2
cargo build --release -q -p portcullis-bench --bin ldap_login_rate >&2
target=${CARGO_TARGET_DIR:-$repo/target}
bin=$target/release/portcullis

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

# --- slapd in $work/slapd ------------------------------------------------------------------
base_dn=dc=example,dc=com
admin_dn=cn=admin,$base_dn
admin_pw='admin pw'
service_dn=cn=portcullis,ou=services,$base_dn
service_pw='service pw'
password='bench password 1'
d=$work/slapd
mkdir -p "$d/data"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj "/CN=ldap bench CA" \
  -keyout "$d/ca.key" -out "$d/ca.pem" 2>"$work/openssl.log" || die "openssl (CA): $(cat "$work/openssl.log")"
# libldap checks a server called localhost against the machine's name: the certificate has it too.
san="subjectAltName=IP:127.0.0.1,DNS:localhost"
host=$(cat /proc/sys/kernel/hostname 2>/dev/null || true)
[ -z "$host" ] || [ "$host" = localhost ] || san="$san,DNS:$host"
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj "/CN=127.0.0.1" \
  -addext "$san" -addext "basicConstraints=critical,CA:FALSE" -addext "extendedKeyUsage=serverAuth" \
  -CA "$d/ca.pem" -CAkey "$d/ca.key" -keyout "$d/server.key" -out "$d/server.pem" 2>"$work/openssl.log" \
  || die "openssl (server certificate): $(cat "$work/openssl.log")"
hash() { slappasswd -h '{SSHA}' -s "$1"; }
cat >"$d/slapd.conf" <<EOF
include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include /etc/ldap/schema/nis.schema
pidfile $d/slapd.pid
argsfile $d/slapd.args
modulepath /usr/lib/ldap
moduleload back_mdb
moduleload memberof
TLSCACertificateFile $d/ca.pem
TLSCertificateFile $d/server.pem
TLSCertificateKeyFile $d/server.key

database mdb
suffix "$base_dn"
rootdn "$admin_dn"
rootpw $(hash "$admin_pw")
directory $d/data
maxsize 268435456
dbnosync
index objectClass,uid,mail,member eq

overlay memberof
memberof-group-oc groupOfNames
memberof-member-ad member
memberof-memberof-ad memberOf
memberof-refint TRUE

access to attrs=userPassword
  by * auth
access to *
  by dn.exact="$service_dn" read
  by self read
  by anonymous auth
  by * none
EOF
ldap_port=$(free_port)
ldaps_port=$(free_port)
ldap_url=ldap://127.0.0.1:$ldap_port
ldaps_url=ldaps://127.0.0.1:$ldaps_port
# -d 0: in the foreground, no per-operation log (the harness's stats level costs CPU).
taskset -c $SERVER_CPU "$slapd_bin" -d 0 -f "$d/slapd.conf" -h "$ldap_url $ldaps_url" >"$work/slapd.log" 2>&1 &
pids+=("$!")
export LDAPTLS_CACERT=$d/ca.pem LDAPTLS_REQCERT=demand
for _ in $(seq 200); do
  ldapwhoami -x -H "$ldap_url" -D "$admin_dn" -w "$admin_pw" >/dev/null 2>&1 && break
  sleep 0.05
done
ldapwhoami -x -H "$ldap_url" -D "$admin_dn" -w "$admin_pw" >/dev/null 2>&1 || die "slapd did not start: $(cat "$work/slapd.log")"

user_hash=$(hash "$password")
python3 - "$base_dn" "$USERS" "$user_hash" "$(hash "$service_pw")" >"$work/seed.ldif" <<'PY'
import sys
base, users, user_hash, service_hash = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
out = [f"dn: {base}\nobjectClass: dcObject\nobjectClass: organization\ndc: example\no: Example\n"]
for ou in ["people", "groups", "services"]:
    out.append(f"dn: ou={ou},{base}\nobjectClass: organizationalUnit\nou: {ou}\n")
out.append(f"dn: cn=portcullis,ou=services,{base}\nobjectClass: organizationalRole\n"
           f"objectClass: simpleSecurityObject\ncn: portcullis\nuserPassword: {service_hash}\n")
for i in range(users):
    out.append(f"dn: uid=bench{i},ou=people,{base}\nobjectClass: inetOrgPerson\nuid: bench{i}\n"
               f"cn: Bench User {i}\nsn: User\nmail: bench{i}@example.com\nuserPassword: {user_hash}\n")
members = "".join(f"member: uid=bench{i},ou=people,{base}\n" for i in range(users))
out.append(f"dn: cn=bench,ou=groups,{base}\nobjectClass: groupOfNames\ncn: bench\n{members}")
print("\n".join(out))
PY
ldapadd -x -H "$ldap_url" -D "$admin_dn" -w "$admin_pw" -f "$work/seed.ldif" >"$work/ldapadd.log" 2>&1 \
  || die "ldapadd of the seed: $(tail -n5 "$work/ldapadd.log")"
ldapwhoami -x -H "$ldaps_url" -D "uid=bench0,ou=people,$base_dn" -w "$password" >/dev/null \
  || die "bench0 cannot bind over ldaps"
log "slapd: $USERS people, one group, on $ldaps_url"

# --- two configurations: the local argon2id first factor, and [ldap] -----------------------
for side in local ldap; do
  "$bin" init --dir "$work/$side" >/dev/null
done
printf '%s\n' "$service_pw" >"$work/ldap/ldap.pass"
# Under the [ldap] table `init` writes (its keys commented out): a second [ldap] would be a
# duplicate table.
cat >"$work/ldap/keys.toml" <<EOF
url = "$ldaps_url"
ca_file = "$d/ca.pem"
bind_dn = "$service_dn"
bind_password_file = "$work/ldap/ldap.pass"
base_dn = "ou=people,$base_dn"
group_base_dn = "ou=groups,$base_dn"
EOF
if grep -q '^\[ldap\]$' "$work/ldap/portcullis.toml"; then
  sed -i "/^\[ldap\]\$/r $work/ldap/keys.toml" "$work/ldap/portcullis.toml"
else
  { echo; echo "[ldap]"; cat "$work/ldap/keys.toml"; } >>"$work/ldap/portcullis.toml"
fi
for side in local ldap; do
  "$bin" -c "$work/$side/portcullis.toml" config check >/dev/null || die "$side: config check failed"
done
# The gateway's own path to the directory: bench0 found by mail (then removed again).
"$bin" -c "$work/ldap/portcullis.toml" user add bench0@example.com --ldap --no-terminal-qr >"$work/add.txt" \
  || die "user add --ldap: the gateway does not find bench0 in LDAP"
grep -q "bench0" "$work/add.txt" || die "user add --ldap printed no bench0: $(cat "$work/add.txt")"
"$bin" -c "$work/ldap/portcullis.toml" user remove bench0 >/dev/null || die "could not remove the probe user bench0 again"

# --- 1. full logins per second: LDAP vs local argon2id -------------------------------------
log "login rate (local argon2id, then [ldap]; ${DURATION} s each, twice, alternating)"
taskset -c $SERVER_CPU "$target/release/ldap_login_rate" "$DURATION" "$work/local/portcullis.toml" \
  "$work/ldap/portcullis.toml" bench "$USERS" "$password" >"$work/login.txt" 2>"$work/login.err" \
  || die "ldap_login_rate: $(cat "$work/login.err")"
[ ! -s "$work/login.err" ] || log "ldap_login_rate: $(cat "$work/login.err")"
val() { sed -n "s/^$1=//p" "$work/login.txt"; }
for k in login_local_per_s login_ldap_per_s; do
  [ -n "$(val $k)" ] || die "ldap_login_rate printed no $k: $(cat "$work/login.txt")"
  log "$k=$(val $k)"
done

# --- 2. raw binds: sequential ldapwhoami over ldaps ----------------------------------------
log "ldapwhoami binds (${DURATION} s, sequential, on core $CLIENT_CPU)"
whoami_rate=$(taskset -c $CLIENT_CPU python3 - "$DURATION" "$ldaps_url" "uid=bench1,ou=people,$base_dn" "$password" <<'PY'
import subprocess, sys, time
seconds, url, dn, pw = float(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
argv = ["ldapwhoami", "-x", "-H", url, "-D", dn, "-w", pw]
subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)  # warm-up
n, t0 = 0, time.monotonic()
while time.monotonic() - t0 < seconds:
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
    n += 1
print(f"{n / (time.monotonic() - t0):.2f}")
PY
) || die "ldapwhoami failed"
log "ldapwhoami_per_s=$whoami_rate"

rows="| full login through the core (password + TOTP + session with groups), 1 core with slapd: per s, [ldap] (search + bind over ldaps) ÷ local argon2id | $(val login_ldap_per_s) | local argon2id: $(val login_local_per_s) | $(ratio "$(val login_ldap_per_s)" "$(val login_local_per_s)") |
| LDAP logins ÷ raw binds to the same slapd: per s | $(val login_ldap_per_s) | \`ldapwhoami -x\` over ldaps, sequential processes on core $CLIENT_CPU: $whoami_rate | $(ratio "$(val login_ldap_per_s)" "$whoami_rate") |"
if $rows_only; then echo "$rows"; else
  echo "| measurement | portcullis | reference (same run) | ratio |"
  echo "|---|---|---|---|"
  echo "$rows"
fi
