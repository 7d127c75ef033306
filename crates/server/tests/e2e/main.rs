//! End-to-end tests: each runs the real `portcullis` binary in its own temporary directory.
#![allow(clippy::unwrap_used, clippy::disallowed_methods)] // test code: a panic is a failure report

mod browser;
mod cli;
mod concurrency;
mod harness;
mod import;
mod qr;
