//! The portcullis auth core: users and tokens, first- and second-factor checks, lockout and
//! replay rules, sessions, access rules, brute-force regulation, enrollment invitations,
//! the configuration file, and the `Directory` trait every store implements.

pub mod access;
pub mod authz;
pub mod client;
pub mod clock;
pub mod config;
pub mod cookie;
pub mod credentials;
pub mod engine;
pub mod external;
pub mod factor;
pub mod gate;
pub mod invite;
pub mod login;
pub mod model;
pub mod pam_socket;
pub mod passkey;
pub mod password;
pub mod push;
pub mod random;
pub mod redirect;
pub mod regulation;
pub mod scratch;
pub mod session;
pub mod store;
#[cfg(test)]
#[allow(clippy::unwrap_used)] // test support: a poisoned lock is a failed test
mod testing;

pub use clock::{Clock, SystemClock};
pub use config::Config;
pub use gate::{Gate, Outcome, Rejection};
pub use invite::{Invite, InviteStore};
pub use model::{FirstFactor, Step, Token, TokenKind, User};
pub use regulation::{Banned, RegulationPolicy, Regulator};
pub use session::{Level, Session, SessionBackend, SessionId, SessionPolicy, Sessions};
pub use store::{Directory, StoreError};
