//! End-to-end tests: each runs the real `portcullis` binary in its own temporary directory.

mod cli;
mod concurrency;
mod harness;
mod qr;
