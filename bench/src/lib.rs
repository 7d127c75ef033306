//! Benchmarks live in `benches/`; `bench/run.sh` runs them beside their C peers.
