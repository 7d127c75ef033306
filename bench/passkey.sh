#!/usr/bin/env bash
# Passkey logins per second against password+TOTP logins per second, one core, one run
# (issue 18): bench/src/bin/passkey_login.rs drives the core as the portal does, both
# kinds alternating; the software authenticator's signing is left out of the time. argon2id
# (the password, in both) dominates, so the ratio is near 1: the passkey's own cost (an
# ES256 verification, the ceremony state, the counter's update in SQLite) is the difference.
# Usage: bash bench/passkey.sh [--rows]
set -euo pipefail
cd "$(dirname "$0")/.."
rows_only=false
[ "${1:-}" = "--rows" ] && rows_only=true
ROUNDS=${BENCH_PASSKEY_ROUNDS:-100}
command -v taskset >/dev/null || { echo "passkey.sh: taskset is missing (apt-get install util-linux)" >&2; exit 1; }
cargo build --release -q -p portcullis-bench --bin passkey_login >&2
target=${CARGO_TARGET_DIR:-$(pwd)/target}
out=$(taskset -c 0 "$target/release/passkey_login" "$ROUNDS")
val() { sed -n "s/^$1=//p" <<<"$out"; }
row="| passkey login (password + assertion) per s, one core | $(val passkey_per_s) | password + TOTP login $(val totp_per_s) per s | $(val ratio)× (argon2id dominates both) |"
if $rows_only; then
  echo "$row"
else
  echo "$out"
  echo "$row"
fi
