//! pam_portcullis: a PAM module for sshd and sftp that asks for the one-time code and checks
//! it against the portcullis store — the same users, tokens, replay state and lockout as the
//! web gateway — or against a pam_oath `users.oath` used unchanged.
//!
//! Layout: `options` parses the service-file arguments, `auth` decides (against the
//! [`auth::PamHandle`] trait, so it is tested without libpam), `worker` asks the store on a
//! thread with a deadline, `syslog` writes the audit line, and `ffi` — the only unsafe code
//! in the workspace — adapts libpam's C interface.

pub mod auth;
mod ffi;
pub mod options;
pub mod syslog;
pub mod worker;

pub use auth::{PamHandle, PamStatus, authenticate};
pub use options::{OptionError, Options, Source};
