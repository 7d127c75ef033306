//! Shape checks for codes typed by people, before any cryptography runs.

/// The alphabet a code is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeFormat {
    /// HOTP/TOTP: ASCII digits only.
    Decimal,
    /// mOTP: ASCII hex digits, either case.
    Hex,
}

/// True when `code` has exactly `digits` characters of `format`.
///
/// Only ASCII counts: `char::is_numeric` would also accept other scripts' digits.
pub fn is_well_formed(code: &str, digits: u32, format: CodeFormat) -> bool {
    code.len() == digits as usize
        && code.bytes().all(|b| match format {
            CodeFormat::Decimal => b.is_ascii_digit(),
            CodeFormat::Hex => b.is_ascii_hexdigit(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_ascii_digits_are_decimal() {
        assert!(is_well_formed("012345", 6, CodeFormat::Decimal));
        assert!(!is_well_formed("01234", 6, CodeFormat::Decimal));
        assert!(!is_well_formed("01234a", 6, CodeFormat::Decimal));
        // Arabic-Indic and fullwidth digits are numeric to Rust but not codes.
        assert!(!is_well_formed("١٢٣٤٥٦", 6, CodeFormat::Decimal));
        assert!(!is_well_formed("１２３４５６", 6, CodeFormat::Decimal));
        assert!(!is_well_formed(" 12345", 6, CodeFormat::Decimal));
    }

    #[test]
    fn hex_accepts_both_cases() {
        assert!(is_well_formed("a1B2c3", 6, CodeFormat::Hex));
        assert!(!is_well_formed("a1B2cg", 6, CodeFormat::Hex));
    }
}
