//! End-to-end tests: each runs the real `portcullis` binary in its own temporary directory.
#![allow(clippy::unwrap_used, clippy::disallowed_methods)] // test code: a panic is a failure report

mod apache;
mod apache_server;
mod browser;
mod caddy;
mod cli;
mod concurrency;
mod duo;
#[path = "../../../duo/tests/standin_harness/mod.rs"]
mod duo_standin;
mod gateway;
mod harness;
mod import;
mod ldap;
#[path = "../../../store/tests/ldap_server/mod.rs"]
mod ldap_server;
mod nginx;
mod nodes;
mod package;
mod pam;
mod passkey;
#[path = "../../../store/tests/pg/mod.rs"]
mod pg;
#[path = "../../../store/tests/ports/mod.rs"]
mod ports;
mod postgres;
mod proxy;
mod qr;
mod readme;
#[path = "../../../store/tests/redis_server/mod.rs"]
mod redis_server;
mod security;
mod service;
mod tls;
