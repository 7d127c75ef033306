#!/usr/bin/env bash
# One successful PAM authentication through pamtester, pam_portcullis against pam_oath
# (Debian libpam-oath) on the same HOTP users file in the same run: each login uses the
# next counter's code, alternating modules, so both read and rewrite the same file. Also
# pam_portcullis on its own store (`config=`, the same HOTP key imported into SQLite), the
# mode that shares no file with pam_oath and so has no lock file to leave lingering. A
# pam_permit service gives the floor (pamtester + libpam themselves). Needs root (writes
# /etc/pam.d/portcullis-bench-*, removed on exit). Prints README table rows.
# Usage: bash bench/pam.sh [LOGINS]   (default 200 per module)
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-200}
for p in pamtester libpam-oath libpam0g-dev python3; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || {
    export DEBIAN_FRONTEND=noninteractive
    [ -n "${PORTCULLIS_APT_UPDATED:-}" ] || apt-get update -qq
    apt-get install -y -qq --no-install-recommends "$p" >/dev/null
  }
done
cargo build -q --release -p pam-portcullis -p portcullis
target=${CARGO_TARGET_DIR:-target}
so=$(realpath "$target/release/libpam_portcullis.so")
bin=$(realpath "$target/release/portcullis")
work=$(mktemp -d)
ours=portcullis-bench-ours-$$; theirs=portcullis-bench-oath-$$; floor=portcullis-bench-permit-$$
store=portcullis-bench-store-$$
cleanup() { rm -f "/etc/pam.d/$ours" "/etc/pam.d/$theirs" "/etc/pam.d/$floor" "/etc/pam.d/$store"; rm -rf "$work"; }
trap cleanup EXIT
key=3132333435363738393031323334353637383930
printf 'HOTP\tbench\t-\t%s\t0\n' "$key" > "$work/users.oath"; chmod 600 "$work/users.oath"
echo "auth required $so usersfile=$work/users.oath window=10 digits=6 log_socket=$work/none" > "/etc/pam.d/$ours"
echo "auth required pam_oath.so usersfile=$work/users.oath window=10 digits=6" > "/etc/pam.d/$theirs"
echo "auth required pam_permit.so" > "/etc/pam.d/$floor"
# The same key as a second user in a SQLite store, its counter its own.
"$bin" init --dir "$work/store" >/dev/null
printf 'HOTP\tbench2\t-\t%s\t0\n' "$key" > "$work/import.oath"
"$bin" -c "$work/store/portcullis.toml" import --format pam_oath "$work/import.oath" >"$work/import.log" 2>&1 \
  || { cat "$work/import.log" >&2; exit 1; }
echo "auth required $so config=$work/store/portcullis.toml log_socket=$work/none" > "/etc/pam.d/$store"
python3 - "$n" "$key" "$ours" "$theirs" "$floor" "$store" "$(dpkg-query -W -f='${Version}' libpam-oath)" <<'PY'
import hmac, hashlib, struct, subprocess, sys, time
n, key, ours, theirs, floor, store, version = int(sys.argv[1]), bytes.fromhex(sys.argv[2]), *sys.argv[3:]
def hotp(c):
    h = hmac.new(key, struct.pack(">Q", c), hashlib.sha1).digest()
    o = h[-1] & 15
    return "%06d" % ((struct.unpack(">I", h[o:o + 4])[0] & 0x7fffffff) % 1000000)
def login(service, code, user="bench"):
    r = subprocess.run(["pamtester", service, user, "authenticate"], input=code + "\n",
                       capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"{service} rejected {code}: {r.stderr}")
spent = {ours: 0.0, theirs: 0.0, floor: 0.0, store: 0.0}
for i in range(2 * n):
    service = ours if i % 2 == 0 else theirs
    t = time.perf_counter(); login(service, hotp(i)); spent[service] += time.perf_counter() - t
    if i % 2 == 0:
        t = time.perf_counter(); login(floor, ""); spent[floor] += time.perf_counter() - t
        t = time.perf_counter(); login(store, hotp(i // 2), "bench2"); spent[store] += time.perf_counter() - t
ms = {k: v / n * 1000 for k, v in spent.items()}
print(f"| PAM login via pamtester, HOTP users.oath (rewritten each time): ms per login | {ms[ours]:.2f} | pam_oath {version}: {ms[theirs]:.2f} | {ms[ours] / ms[theirs]:.2f} |")
print(f"| PAM login via pamtester, the same HOTP key in portcullis's own SQLite store (`config=`): ms per login | {ms[store]:.2f} | pam_oath {version} on users.oath: {ms[theirs]:.2f} | {ms[store] / ms[theirs]:.2f} |")
print(f"| PAM login: module's own cost above pamtester + pam_permit ({ms[floor]:.2f} ms): ms | {ms[ours] - ms[floor]:.2f} | pam_oath: {ms[theirs] - ms[floor]:.2f} | {(ms[ours] - ms[floor]) / max(ms[theirs] - ms[floor], 1e-9):.2f} |")
PY
