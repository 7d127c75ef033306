//! How a user's first factor and a token's kind are written in a database column, the
//! same for every SQL store (SQLite, PostgreSQL).

use portcullis_core::model::{FirstFactor, Step, Token, TokenKind};
use portcullis_otp::{Algorithm, Secret};
use zeroize::Zeroizing;

/// The first factor as a column: `none`, `hash:…`, `pin:…` or `external`.
pub(crate) fn first_factor_text(f: &FirstFactor) -> Zeroizing<String> {
    Zeroizing::new(match f {
        FirstFactor::None => "none".into(),
        FirstFactor::Hash(h) => format!("hash:{h}"),
        FirstFactor::Pin(p) => format!("pin:{}", p.as_str()),
        FirstFactor::External => "external".into(),
    })
}

/// The first factor from its column (anything unknown: none).
pub(crate) fn first_factor_parse(s: &str) -> FirstFactor {
    if let Some(h) = s.strip_prefix("hash:") {
        FirstFactor::Hash(h.to_string())
    } else if let Some(p) = s.strip_prefix("pin:") {
        FirstFactor::Pin(Zeroizing::new(p.to_string()))
    } else if s == "external" {
        FirstFactor::External
    } else {
        FirstFactor::None
    }
}

/// The `kind` and `period` columns of a token (period 0 = event based).
pub(crate) fn token_kind_period(t: &Token) -> (&'static str, u32) {
    let kind = match t.kind {
        TokenKind::Oath => "oath",
        TokenKind::Motp => "motp",
    };
    let period = match t.step {
        Step::Event => 0,
        Step::Time(p) => p,
    };
    (kind, period)
}

/// A token with no use recorded from its defining columns.
pub(crate) fn token_from_columns(kind: &str, period: u32, secret: Vec<u8>, algorithm: &str, digits: u32) -> Token {
    let kind = if kind == "motp" {
        TokenKind::Motp
    } else {
        TokenKind::Oath
    };
    let step = if period == 0 { Step::Event } else { Step::Time(period) };
    let algorithm = Algorithm::parse(algorithm).unwrap_or_default();
    Token::new(kind, step, Secret::from_bytes(secret), algorithm, digits)
}
