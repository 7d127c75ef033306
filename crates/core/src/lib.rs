//! The portcullis auth core: users and tokens, first- and second-factor checks, lockout and
//! replay rules, the configuration file, and the `Directory` trait every store implements.

pub mod access;
pub mod client;
pub mod clock;
pub mod config;
pub mod gate;
pub mod model;
pub mod password;
pub mod random;
pub mod redirect;
pub mod scratch;
pub mod store;

pub use clock::{Clock, SystemClock};
pub use config::Config;
pub use gate::{Gate, Outcome, Rejection};
pub use model::{FirstFactor, Step, Token, TokenKind, User};
pub use store::{Directory, StoreError};
