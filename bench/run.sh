#!/usr/bin/env bash
# Runs the benchmarks side by side in one run and prints one results table for the README:
# TOTP verification against liboath (criterion), then the gateway against a bare hyper
# server and nginx auth_request against its ceiling, memory per session, logins per
# second and memory under a login flood (bench/gateway.sh), Apache with mod_authnz_fcgi and
# mod_authnz_external against a trivial FastCGI authorizer (bench/apache.sh), and a PAM login
# against pam_oath (bench/pam.sh, needs root), and the gateway with its state in Redis against
# the same gateway with its state in SQLite (bench/state.sh), and logins on PostgreSQL against
# SQLite and two gateways behind one nginx upstream against one (bench/nodes.sh, needs root),
# and logins with the LDAP first factor against the local argon2id one and the raw bind rate
# of the same slapd (bench/ldap.sh), and a Duo push login through the core against the same
# Auth API calls made straight, on the stand-in (bench/duo.sh, python3-aiohttp), and passkey
# logins against password+TOTP logins (bench/passkey.sh).
# Installs the Debian packages it needs when
# they are missing (liboath-dev, wrk, nginx, apache2, libapache2-mod-authnz-external,
# pamtester, libpam-oath, postgresql, slapd, ldap-utils). Needs 2 cores; takes about 9
# minutes once built.
# Usage: bash bench/run.sh
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(liboath-dev pkg-config wrk nginx curl python3 apache2 libapache2-mod-authnz-external redis-server postgresql slapd ldap-utils python3-aiohttp openssl)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing benchmark dependencies: ${missing[*]}" >&2
  if [ "$(id -u)" = 0 ]; then sudo=""; else sudo="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  [ -n "${PORTCULLIS_APT_UPDATED:-}" ] || $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # Debian starts the packaged nginx on port 80; the benchmark runs its own.
  if [[ " ${missing[*]} " == *" nginx "* ]] && command -v systemctl >/dev/null; then
    $sudo systemctl disable --now nginx >/dev/null 2>&1 || true
  fi
  if [[ " ${missing[*]} " == *" apache2 "* ]] && command -v systemctl >/dev/null; then
    $sudo systemctl disable --now apache2 >/dev/null 2>&1 || true
  fi
  # Likewise the packaged slapd: bench/ldap.sh starts its own in a temp directory.
  if [[ " ${missing[*]} " == *" slapd "* ]] && command -v systemctl >/dev/null; then
    $sudo systemctl disable --now slapd >/dev/null 2>&1 || true
  fi
fi

target=${CARGO_TARGET_DIR:-target}
out=$target/bench; mkdir -p "$out"
gcc -O2 -o "$out/liboath_totp" bench/liboath_totp.c -loath
cargo bench -p portcullis-bench --bench totp_verify -- --noplot >/dev/null 2>&1 || cargo bench -p portcullis-bench --bench totp_verify
median() { python3 -c "import json,sys; print(round(json.load(open(sys.argv[1]))['median']['point_estimate'],1))" "$1"; }
ours=$(median "$target/criterion/totp_verify_window1_wrong_code/new/estimates.json")
one=$(median "$target/criterion/hotp_one_code/new/estimates.json")
theirs=$("$out/liboath_totp")
ratio=$(python3 -c "print(round($ours/$theirs,2))")

gateway_rows=$(bash bench/gateway.sh --rows)
apache_rows=$(bash bench/apache.sh --rows)
pam_rows=$(bash bench/pam.sh)
state_rows=$(bash bench/state.sh --rows)
nodes_rows=$(bash bench/nodes.sh --rows)
ldap_rows=$(bash bench/ldap.sh --rows)
duo_rows=$(bash bench/duo.sh --rows)
passkey_rows=$(bash bench/passkey.sh --rows)

echo
echo "Machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')), $(uname -sr)."
echo
echo "| measurement | portcullis | reference (same run) | ratio |"
echo "|---|---|---|---|"
echo "| TOTP verify, ±1 window, wrong code: ns (lower is better) | $ours | liboath $(pkg-config --modversion liboath 2>/dev/null || echo '?') oath_totp_validate: $theirs | $ratio |"
echo "| one HOTP code: ns | $one | | |"
echo "$gateway_rows"
echo "$apache_rows"
echo "$pam_rows"
echo "$state_rows"
echo "$nodes_rows"
echo "$ldap_rows"
echo "$duo_rows"
echo "$passkey_rows"
