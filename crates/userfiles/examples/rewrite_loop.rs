//! Stress helper: rewrites a users file forever via `otp_users::update`, bumping every counter.
//!
//! Usage: `cargo run --example rewrite_loop -- <path> [mod_authn_otp|pam_oath]`.
//! Kill it at any moment (even with SIGKILL); the file must still parse and hold every user.

use std::path::PathBuf;
use std::process::ExitCode;

use portcullis_userfiles::otp_users::{self, Dialect};

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(path) = args.next().map(PathBuf::from) else {
        eprintln!("usage: rewrite_loop <users file> [mod_authn_otp|pam_oath]");
        return ExitCode::from(2);
    };
    let dialect = match args.next().as_deref() {
        None | Some("pam_oath") => Dialect::PamOath,
        Some("mod_authn_otp") => Dialect::ModAuthnOtp,
        Some(other) => {
            eprintln!("unknown dialect {other:?}; use mod_authn_otp or pam_oath");
            return ExitCode::from(2);
        }
    };
    loop {
        let r = otp_users::update(&path, dialect, |f| {
            for e in f.entries_mut() {
                let c = e.counter.unwrap_or(0) + 1;
                e.counter = Some(c);
            }
            Ok::<_, std::convert::Infallible>(())
        });
        if let Err(e) = r {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    }
}
