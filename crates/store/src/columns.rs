//! How a user's first factor and a token's kind are written in a database column, the
//! same for every SQL store (SQLite, PostgreSQL).

use portcullis_core::model::{FirstFactor, Step, Token, TokenKind};
use portcullis_otp::{Algorithm, Secret};
use zeroize::Zeroizing;

/// Group names as one column or field: a newline, then the names one a line, so a name
/// with a comma (an LDAP group's DN) stays whole. Older rows hold names joined by commas.
pub(crate) fn groups_text(groups: &[String]) -> String {
    if groups.is_empty() {
        return String::new();
    }
    format!("\n{}", groups.join("\n"))
}

/// Group names from [`groups_text`]'s form, or from the older comma-joined one.
pub(crate) fn groups_parse(text: &str) -> Vec<String> {
    let names: Box<dyn Iterator<Item = &str>> = match text.strip_prefix('\n') {
        Some(lines) => Box::new(lines.split('\n')),
        None => Box::new(text.split(',')),
    };
    names.filter(|g| !g.is_empty()).map(str::to_string).collect()
}

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

#[cfg(test)]
mod tests {
    use super::{groups_parse, groups_text};

    #[test]
    fn group_names_with_commas_round_trip_and_old_rows_still_read() {
        let groups = vec![
            "staff".to_string(),
            "cn=x\\,admins,ou=groups,dc=example,dc=com".to_string(),
        ];
        assert_eq!(groups_parse(&groups_text(&groups)), groups);
        assert_eq!(groups_parse(&groups_text(&[])), Vec::<String>::new());
        assert_eq!(groups_parse("staff,admins"), ["staff", "admins"]);
        assert_eq!(groups_parse(""), Vec::<String>::new());
    }
}
