#!/usr/bin/env bash
# Runs the benchmarks side by side in one run and prints the results table for the README.
# Needs liboath-dev (Debian). Usage: bash bench/run.sh
set -euo pipefail
cd "$(dirname "$0")/.."
out=target/bench; mkdir -p "$out"
gcc -O2 -o "$out/liboath_totp" bench/liboath_totp.c -loath
cargo bench -p portcullis-bench --bench totp_verify -- --noplot >/dev/null 2>&1 || cargo bench -p portcullis-bench --bench totp_verify
median() { python3 -c "import json,sys; print(round(json.load(open(sys.argv[1]))['median']['point_estimate'],1))" "$1"; }
ours=$(median target/criterion/totp_verify_window1_wrong_code/new/estimates.json)
one=$(median target/criterion/hotp_one_code/new/estimates.json)
theirs=$("$out/liboath_totp")
ratio=$(python3 -c "print(round($ours/$theirs,2))")
echo "| TOTP verify, ±1 window, wrong code | ns per verification |"
echo "|---|---|"
echo "| portcullis-otp (RustCrypto HMAC-SHA1) | $ours |"
echo "| liboath $(pkg-config --modversion liboath 2>/dev/null || echo '?') oath_totp_validate | $theirs |"
echo "| ratio portcullis / liboath | $ratio |"
echo "| (one HOTP code, portcullis) | $one |"
