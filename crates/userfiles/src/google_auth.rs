//! `~/.google_authenticator` (google-authenticator-libpam) state files: parse, edit, render byte-identically.
//!
//! Sources: `FILEFORMAT` and `src/pam_google_authenticator.c` (`get_shared_secret`,
//! `get_cfg_value`/`set_cfg_value`, `rate_limit`, `check_scratch_codes`,
//! `invalidate_timebased_code`, `check_time_skew`), google/google-authenticator-libpam.
//!
//! * Line 1: the base32 secret (`A-Z2-7`; this reader also accepts lower case,
//!   spaces, dashes and `=` padding, and keeps the line as written).
//! * Option lines start with `" ` (double quote, space) then an upper-case name
//!   containing `_`, then space-separated arguments:
//!   - `RATE_LIMIT n m ts...` — at most n logins per m seconds; the timestamps are
//!     the recent attempts, rewritten by the module on every login.
//!   - `WINDOW_SIZE n` — TOTP: codes accepted around now (default 3); HOTP: codes after the counter.
//!   - `DISALLOW_REUSE [steps...]` — TOTP replay protection; the list holds used
//!     time-step numbers (`now / STEP_SIZE`).
//!   - `TOTP_AUTH` — TOTP mode (only if no `HOTP_COUNTER`).
//!   - `HOTP_COUNTER n` — HOTP mode; n is the next counter accepted.
//!   - `STEP_SIZE n` — TOTP step in seconds (1–60, default 30).
//!   - `TIME_SKEW n` — learned clock skew in steps.
//!   - `RESETTING_TIME_SKEW ts+skew ...` — skew-learning state.
//!   - `OTP_DISABLED` — no OTP for this user.
//!   - `"PASSWORD=...` — mod_authn_google's static password (no space after the quote;
//!     `" PASSWORD=` is accepted too).
//!   - anything else is kept verbatim as [`GaOption::Unknown`].
//! * Lines that are exactly eight digits (10000000–99999999) are one-time scratch codes.
//! * Other lines (e.g. blank) are kept verbatim.
//!
//! Writing: pam_google_authenticator writes `<file>~` then renames it; use
//! [`crate::atomic::write_atomic`] to store a rendered file.

use std::fmt;
use std::path::Path;

use zeroize::Zeroizing;

use crate::b32;
use crate::error::Error;

/// A one-time scratch code (a secret: hidden from Debug).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ScratchCode(pub u32);

impl fmt::Debug for ScratchCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ScratchCode(<redacted>)")
    }
}

/// A parsed option line.
#[derive(Clone, PartialEq, Eq)]
pub enum GaOption {
    /// `RATE_LIMIT attempts interval [timestamps...]`.
    RateLimit {
        /// Maximum logins per interval.
        attempts: u32,
        /// Interval length in seconds.
        interval: u32,
        /// Recent login attempt times (Unix seconds).
        timestamps: Vec<u64>,
    },
    /// `WINDOW_SIZE n`.
    WindowSize(u32),
    /// `DISALLOW_REUSE [steps...]`: used TOTP step numbers.
    DisallowReuse(Vec<u64>),
    /// `TOTP_AUTH`.
    TotpAuth,
    /// `HOTP_COUNTER n`: next accepted counter.
    HotpCounter(i64),
    /// `STEP_SIZE n` seconds.
    StepSize(u32),
    /// `TIME_SKEW n` steps.
    TimeSkew(i64),
    /// `RESETTING_TIME_SKEW ts±skew ...`.
    ResettingTimeSkew(Vec<(u64, i64)>),
    /// `OTP_DISABLED`.
    OtpDisabled,
    /// mod_authn_google's `"PASSWORD=...` static password.
    Password(Zeroizing<String>),
    /// Any other `"` line, verbatim (without newline).
    Unknown(String),
}

impl fmt::Debug for GaOption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GaOption::RateLimit {
                attempts,
                interval,
                timestamps,
            } => f
                .debug_struct("RateLimit")
                .field("attempts", attempts)
                .field("interval", interval)
                .field("timestamps", timestamps)
                .finish(),
            GaOption::WindowSize(n) => write!(f, "WindowSize({n})"),
            GaOption::DisallowReuse(v) => write!(f, "DisallowReuse({v:?})"),
            GaOption::TotpAuth => f.write_str("TotpAuth"),
            GaOption::HotpCounter(n) => write!(f, "HotpCounter({n})"),
            GaOption::StepSize(n) => write!(f, "StepSize({n})"),
            GaOption::TimeSkew(n) => write!(f, "TimeSkew({n})"),
            GaOption::ResettingTimeSkew(v) => write!(f, "ResettingTimeSkew({v:?})"),
            GaOption::OtpDisabled => f.write_str("OtpDisabled"),
            GaOption::Password(_) => f.write_str("Password(<redacted>)"),
            GaOption::Unknown(s) => write!(f, "Unknown(<{} bytes>)", s.len()),
        }
    }
}

/// What a line after the secret holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GaItem {
    /// An option line.
    Option(GaOption),
    /// An eight-digit scratch code.
    Scratch(ScratchCode),
    /// Anything else, verbatim (without newline).
    Other(String),
}

/// One line after the secret, remembering its original text for byte-identical output.
#[derive(Clone)]
pub struct GaLine {
    /// The line's meaning; edit freely.
    pub item: GaItem,
    original: Option<(GaItem, Zeroizing<String>)>,
}

impl fmt::Debug for GaLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.item {
            // Unrecognised lines might be mangled secrets; show only their size.
            GaItem::Other(s) => write!(f, "Other(<{} bytes>)", s.len()),
            item => item.fmt(f),
        }
    }
}

impl GaLine {
    /// A new line (rendered canonically).
    pub fn new(item: GaItem) -> Self {
        GaLine { item, original: None }
    }
}

/// A parsed `.google_authenticator` file.
#[derive(Clone)]
pub struct GoogleAuthFile {
    /// The decoded shared secret.
    pub secret: Zeroizing<Vec<u8>>,
    original_secret: Option<(Zeroizing<Vec<u8>>, Zeroizing<String>)>,
    /// Lines 2.. in file order.
    pub lines: Vec<GaLine>,
    trailing_newline: bool,
}

impl fmt::Debug for GoogleAuthFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GoogleAuthFile")
            .field("secret", &format_args!("<redacted {} bytes>", self.secret.len()))
            .field("lines", &self.lines)
            .finish()
    }
}

fn perr(
    path: &Path,
    line: usize,
    field: usize,
    name: &'static str,
    problem: impl Into<String>,
    hint: &'static str,
) -> Error {
    Error::Parse {
        path: path.to_owned(),
        line,
        field,
        name,
        problem: problem.into(),
        hint,
    }
}

fn parse_option(path: &Path, lineno: usize, text: &str) -> Result<GaOption, Error> {
    let body = &text[1..];
    if let Some(pw) = body
        .strip_prefix("PASSWORD=")
        .or_else(|| body.strip_prefix(" PASSWORD="))
    {
        return Ok(GaOption::Password(Zeroizing::new(pw.to_owned())));
    }
    let Some(rest) = body.strip_prefix(' ') else {
        return Ok(GaOption::Unknown(text.to_owned()));
    };
    let mut words = rest.split([' ', '\t']).filter(|w| !w.is_empty());
    let name = words.next().unwrap_or("");
    let args: Vec<&str> = words.collect();
    // Field 1 is the option name; arguments are fields 2.. .
    let num = |i: usize, label: &'static str, hint: &'static str| -> Result<u64, Error> {
        let a = args
            .get(i)
            .ok_or_else(|| perr(path, lineno, i + 2, label, "is missing", hint))?;
        a.parse::<u64>().map_err(|_| {
            perr(
                path,
                lineno,
                i + 2,
                label,
                format!("{a:?} is not a non-negative integer"),
                hint,
            )
        })
    };
    let int = |i: usize, label: &'static str, hint: &'static str| -> Result<i64, Error> {
        let a = args
            .get(i)
            .ok_or_else(|| perr(path, lineno, i + 2, label, "is missing", hint))?;
        a.parse::<i64>()
            .map_err(|_| perr(path, lineno, i + 2, label, format!("{a:?} is not an integer"), hint))
    };
    let small = |v: u64, i: usize, label: &'static str, hint: &'static str| -> Result<u32, Error> {
        u32::try_from(v).map_err(|_| perr(path, lineno, i + 2, label, format!("{v} is too large"), hint))
    };
    let no_extra = |n: usize, label: &'static str| -> Result<(), Error> {
        if args.len() > n {
            Err(perr(
                path,
                lineno,
                n + 2,
                label,
                format!("unexpected extra argument {:?}", args[n]),
                "delete the extra arguments",
            ))
        } else {
            Ok(())
        }
    };
    Ok(match name {
        "RATE_LIMIT" => {
            const H: &str = "write \" RATE_LIMIT <attempts 1-100> <seconds 1-3600> [timestamps...]";
            let attempts = small(num(0, "RATE_LIMIT attempts", H)?, 0, "RATE_LIMIT attempts", H)?;
            let interval = small(num(1, "RATE_LIMIT interval", H)?, 1, "RATE_LIMIT interval", H)?;
            let timestamps = (2..args.len())
                .map(|i| num(i, "RATE_LIMIT timestamp", H))
                .collect::<Result<_, _>>()?;
            GaOption::RateLimit {
                attempts,
                interval,
                timestamps,
            }
        }
        "WINDOW_SIZE" => {
            const H: &str = "write \" WINDOW_SIZE <n 1-100>";
            no_extra(1, "WINDOW_SIZE n")?;
            GaOption::WindowSize(small(num(0, "WINDOW_SIZE n", H)?, 0, "WINDOW_SIZE n", H)?)
        }
        "DISALLOW_REUSE" => {
            const H: &str = "write \" DISALLOW_REUSE followed by used time-step numbers";
            GaOption::DisallowReuse(
                (0..args.len())
                    .map(|i| num(i, "DISALLOW_REUSE step", H))
                    .collect::<Result<_, _>>()?,
            )
        }
        "TOTP_AUTH" => {
            no_extra(0, "TOTP_AUTH")?;
            GaOption::TotpAuth
        }
        "OTP_DISABLED" => {
            no_extra(0, "OTP_DISABLED")?;
            GaOption::OtpDisabled
        }
        "HOTP_COUNTER" => {
            no_extra(1, "HOTP_COUNTER n")?;
            GaOption::HotpCounter(int(
                0,
                "HOTP_COUNTER n",
                "write \" HOTP_COUNTER <next counter, usually starting at 1>",
            )?)
        }
        "STEP_SIZE" => {
            const H: &str = "write \" STEP_SIZE <seconds 1-60>";
            no_extra(1, "STEP_SIZE n")?;
            GaOption::StepSize(small(num(0, "STEP_SIZE n", H)?, 0, "STEP_SIZE n", H)?)
        }
        "TIME_SKEW" => {
            no_extra(1, "TIME_SKEW n")?;
            GaOption::TimeSkew(int(0, "TIME_SKEW n", "write \" TIME_SKEW <signed number of steps>")?)
        }
        "RESETTING_TIME_SKEW" => {
            const H: &str = "write entries as <timestamp>+<skew> or <timestamp>-<skew>, or delete the line";
            let mut v = Vec::new();
            for (i, a) in args.iter().enumerate() {
                let bad = || {
                    perr(
                        path,
                        lineno,
                        i + 2,
                        "RESETTING_TIME_SKEW entry",
                        format!("{a:?} is not <timestamp>±<skew>"),
                        H,
                    )
                };
                let split = a.find(['+', '-']).ok_or_else(bad)?;
                let ts = a[..split].parse::<u64>().map_err(|_| bad())?;
                let skew = a[split..].parse::<i64>().map_err(|_| bad())?;
                v.push((ts, skew));
            }
            GaOption::ResettingTimeSkew(v)
        }
        _ => GaOption::Unknown(text.to_owned()),
    })
}

fn join_nums<T: fmt::Display>(out: &mut String, v: &[T]) {
    for x in v {
        out.push(' ');
        out.push_str(&x.to_string());
    }
}

fn render_item(item: &GaItem, out: &mut String) {
    match item {
        GaItem::Other(s) => out.push_str(s),
        GaItem::Scratch(c) => out.push_str(&format!("{:08}", c.0)),
        GaItem::Option(o) => match o {
            GaOption::RateLimit {
                attempts,
                interval,
                timestamps,
            } => {
                out.push_str(&format!("\" RATE_LIMIT {attempts} {interval}"));
                join_nums(out, timestamps);
            }
            GaOption::WindowSize(n) => out.push_str(&format!("\" WINDOW_SIZE {n}")),
            GaOption::DisallowReuse(v) => {
                out.push_str("\" DISALLOW_REUSE");
                join_nums(out, v);
            }
            GaOption::TotpAuth => out.push_str("\" TOTP_AUTH"),
            GaOption::HotpCounter(n) => out.push_str(&format!("\" HOTP_COUNTER {n}")),
            GaOption::StepSize(n) => out.push_str(&format!("\" STEP_SIZE {n}")),
            GaOption::TimeSkew(n) => out.push_str(&format!("\" TIME_SKEW {n}")),
            GaOption::ResettingTimeSkew(v) => {
                out.push_str("\" RESETTING_TIME_SKEW");
                for (ts, skew) in v {
                    out.push_str(&format!(" {ts}{skew:+}"));
                }
            }
            GaOption::OtpDisabled => out.push_str("\" OTP_DISABLED"),
            GaOption::Password(p) => {
                out.push_str("\"PASSWORD=");
                out.push_str(p);
            }
            GaOption::Unknown(s) => out.push_str(s),
        },
    }
}

fn is_scratch(s: &str) -> Option<u32> {
    if s.len() == 8 && s.bytes().all(|b| b.is_ascii_digit()) {
        let v: u32 = s.parse().ok()?;
        (10_000_000..100_000_000).contains(&v).then_some(v)
    } else {
        None
    }
}

/// Parses a `.google_authenticator` file; `path` is only used in error messages.
pub fn parse(text: &str, path: &Path) -> Result<GoogleAuthFile, Error> {
    let (body, trailing_newline) = match text.strip_suffix('\n') {
        Some(b) => (b, true),
        None => (text, false),
    };
    let mut raw_lines = body.split('\n');
    let first = raw_lines.next().unwrap_or("");
    let secret_text = first.strip_suffix('\r').unwrap_or(first);
    let secret = b32::decode(secret_text).map_err(|problem| {
        perr(
            path,
            1,
            1,
            "SECRET",
            problem,
            "line 1 must be the base32 shared secret (A-Z, 2-7), as google-authenticator writes it",
        )
    })?;
    let mut lines = Vec::new();
    for (i, raw) in raw_lines.enumerate() {
        let lineno = i + 2;
        let content = raw.strip_suffix('\r').unwrap_or(raw);
        let item = if content.starts_with('"') {
            GaItem::Option(parse_option(path, lineno, content)?)
        } else if let Some(code) = is_scratch(content) {
            GaItem::Scratch(ScratchCode(code))
        } else {
            GaItem::Other(raw.to_owned())
        };
        lines.push(GaLine {
            original: Some((item.clone(), Zeroizing::new(raw.to_owned()))),
            item,
        });
    }
    Ok(GoogleAuthFile {
        original_secret: Some((secret.clone(), Zeroizing::new(first.to_owned()))),
        secret,
        lines,
        trailing_newline,
    })
}

impl GoogleAuthFile {
    /// A new file holding only `secret`.
    pub fn new(secret: Zeroizing<Vec<u8>>) -> Self {
        GoogleAuthFile {
            secret,
            original_secret: None,
            lines: Vec::new(),
            trailing_newline: true,
        }
    }

    /// Serialises the file; byte-identical to the parsed text for everything unchanged.
    pub fn render(&self) -> Zeroizing<String> {
        let mut out = Zeroizing::new(String::new());
        match &self.original_secret {
            Some((s, text)) if *s == self.secret => out.push_str(text),
            _ => out.push_str(&b32::encode(&self.secret)),
        }
        for line in &self.lines {
            out.push('\n');
            match &line.original {
                Some((item, text)) if *item == line.item => out.push_str(text),
                _ => render_item(&line.item, &mut out),
            }
        }
        if self.trailing_newline {
            out.push('\n');
        }
        out
    }

    /// All options in file order.
    pub fn options(&self) -> impl Iterator<Item = &GaOption> {
        self.lines.iter().filter_map(|l| match &l.item {
            GaItem::Option(o) => Some(o),
            _ => None,
        })
    }

    /// The remaining scratch codes in file order.
    pub fn scratch_codes(&self) -> impl Iterator<Item = ScratchCode> + '_ {
        self.lines.iter().filter_map(|l| match l.item {
            GaItem::Scratch(c) => Some(c),
            _ => None,
        })
    }

    /// `HOTP_COUNTER` if present (HOTP mode per FILEFORMAT).
    pub fn hotp_counter(&self) -> Option<i64> {
        self.options().find_map(|o| match o {
            GaOption::HotpCounter(n) => Some(*n),
            _ => None,
        })
    }

    /// TOTP mode: `TOTP_AUTH` present and `HOTP_COUNTER` absent.
    pub fn is_totp(&self) -> bool {
        self.hotp_counter().is_none() && self.options().any(|o| *o == GaOption::TotpAuth)
    }

    /// `STEP_SIZE`, defaulting to 30 seconds.
    pub fn step_size(&self) -> u32 {
        self.options()
            .find_map(|o| match o {
                GaOption::StepSize(n) => Some(*n),
                _ => None,
            })
            .unwrap_or(30)
    }

    /// Mutable access to the first option matching `pred`.
    pub fn option_mut(&mut self, pred: impl Fn(&GaOption) -> bool) -> Option<&mut GaOption> {
        self.lines.iter_mut().find_map(|l| match &mut l.item {
            GaItem::Option(o) if pred(o) => Some(o),
            _ => None,
        })
    }

    /// Removes the first scratch code equal to `code`; true if one was removed.
    pub fn remove_scratch_code(&mut self, code: u32) -> bool {
        match self
            .lines
            .iter()
            .position(|l| l.item == GaItem::Scratch(ScratchCode(code)))
        {
            Some(i) => {
                self.lines.remove(i);
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SAMPLE: &str = "\
CJEWH6THAJH5FUKI
\" RESETTING_TIME_SKEW 47822956-958 47823967-958 47823452+959
\" RATE_LIMIT 3 30 1439976483 1439976496
\" DISALLOW_REUSE 47959316
\" WINDOW_SIZE 17
\" STEP_SIZE 30
\" TOTP_AUTH
\" LAST0 192.0.2.1 1439976483
\"PASSWORD=hunter22
52449723
11133056
68918952
";

    fn p() -> &'static Path {
        Path::new(".google_authenticator")
    }

    #[test]
    fn sample_round_trips() {
        let f = parse(SAMPLE, p()).unwrap();
        assert_eq!(&f.render()[..], SAMPLE);
        assert_eq!(f.secret.len(), 10);
        assert!(f.is_totp());
        assert_eq!(f.step_size(), 30);
        assert_eq!(
            f.scratch_codes().map(|c| c.0).collect::<Vec<_>>(),
            vec![52449723, 11133056, 68918952]
        );
        let opts: Vec<&GaOption> = f.options().collect();
        assert_eq!(
            opts[0],
            &GaOption::ResettingTimeSkew(vec![(47822956, -958), (47823967, -958), (47823452, 959)])
        );
        assert_eq!(
            opts[1],
            &GaOption::RateLimit {
                attempts: 3,
                interval: 30,
                timestamps: vec![1439976483, 1439976496]
            }
        );
        assert!(matches!(opts[6], GaOption::Unknown(s) if s.starts_with("\" LAST0")));
        assert!(matches!(opts[7], GaOption::Password(p) if p.as_str() == "hunter22"));
        for t in ["", "\r\n", "\nX", "\n\n"] {
            let text = format!("JBSWY3DPEHPK3PXP{t}");
            assert_eq!(&parse(&text, p()).unwrap().render()[..], text);
        }
        let crlf = SAMPLE.replace('\n', "\r\n");
        assert_eq!(&parse(&crlf, p()).unwrap().render()[..], crlf);
    }

    #[test]
    fn modify_keeps_the_rest() {
        let mut f = parse(SAMPLE, p()).unwrap();
        assert!(f.remove_scratch_code(11133056));
        assert!(!f.remove_scratch_code(11133056));
        if let Some(GaOption::DisallowReuse(v)) = f.option_mut(|o| matches!(o, GaOption::DisallowReuse(_))) {
            v.push(47959317);
        }
        let out = f.render();
        let expected = SAMPLE
            .replace("11133056\n", "")
            .replace("DISALLOW_REUSE 47959316", "DISALLOW_REUSE 47959316 47959317");
        assert_eq!(&out[..], expected);
        let g = parse(&out, p()).unwrap();
        assert_eq!(g.scratch_codes().count(), 2);
    }

    #[test]
    fn hotp_mode() {
        let f = parse("JBSWY3DPEHPK3PXP\n\" HOTP_COUNTER 1\n\" TOTP_AUTH\n", p()).unwrap();
        assert_eq!(f.hotp_counter(), Some(1));
        assert!(!f.is_totp());
    }

    #[test]
    fn errors_name_line_and_field() {
        let e = parse("JBSWY3DP1HPK3PXP\n", p()).unwrap_err().to_string();
        assert!(
            e.starts_with(".google_authenticator:1: field 1 (SECRET): character 9 of 16"),
            "{e}"
        );
        assert!(!e.contains("JBSW"), "{e}");
        let e = parse("JBSWY3DPEHPK3PXP\n\" TOTP_AUTH\n\" WINDOW_SIZE x\n", p())
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(".google_authenticator:3: field 2 (WINDOW_SIZE n): \"x\" is not"),
            "{e}"
        );
        let e = parse("JBSWY3DPEHPK3PXP\n\" RATE_LIMIT 3\n", p())
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(".google_authenticator:2: field 3 (RATE_LIMIT interval): is missing"),
            "{e}"
        );
        let e = parse("JBSWY3DPEHPK3PXP\n\" RESETTING_TIME_SKEW 12\n", p())
            .unwrap_err()
            .to_string();
        assert!(e.contains(":2: field 2 (RESETTING_TIME_SKEW entry)"), "{e}");
        let e = parse("", p()).unwrap_err().to_string();
        assert!(e.contains(":1: field 1 (SECRET): is empty"), "{e}");
    }

    #[test]
    fn debug_hides_secrets() {
        let f = parse(SAMPLE, p()).unwrap();
        let d = format!("{f:?}");
        for s in ["CJEWH", "hunter22", "52449723", "192.0.2.1"] {
            assert!(!d.contains(s), "{s} in {d}");
        }
        // ... but still shows what is there.
        for s in [
            "GoogleAuthFile { secret: <redacted 10 bytes>",
            "Scratch(ScratchCode(<redacted>))",
            "RateLimit",
            "TotpAuth",
            "Password(<redacted>)",
        ] {
            assert!(d.contains(s), "{s} not in {d}");
        }
        let other = parse("JBSWY3DPEHPK3PXP\nnot an option\n", p()).unwrap();
        assert!(format!("{other:?}").contains("Other(<13 bytes>)"), "{other:?}");
    }

    #[test]
    fn option_errors_name_the_field_of_every_kind_of_argument() {
        let err = |text: &str| {
            parse(&format!("JBSWY3DPEHPK3PXP\n{text}\n"), p())
                .unwrap_err()
                .to_string()
        };
        let cases = [
            (
                "\" RATE_LIMIT 3 30 1 x",
                ":2: field 5 (RATE_LIMIT timestamp): \"x\" is not",
            ),
            (
                "\" RATE_LIMIT 5000000000 30",
                ":2: field 2 (RATE_LIMIT attempts): 5000000000 is too large",
            ),
            (
                "\" RATE_LIMIT 3 5000000000",
                ":2: field 3 (RATE_LIMIT interval): 5000000000 is too large",
            ),
            ("\" HOTP_COUNTER", ":2: field 2 (HOTP_COUNTER n): is missing"),
            (
                "\" HOTP_COUNTER 1.5",
                ":2: field 2 (HOTP_COUNTER n): \"1.5\" is not an integer",
            ),
            (
                "\" WINDOW_SIZE 3 4",
                ":2: field 3 (WINDOW_SIZE n): unexpected extra argument \"4\"",
            ),
            (
                "\" TOTP_AUTH yes",
                ":2: field 2 (TOTP_AUTH): unexpected extra argument \"yes\"",
            ),
        ];
        for (text, expected) in cases {
            let e = err(text);
            assert!(e.contains(expected), "{text:?}: {e}");
        }
        // Exactly as many arguments as the option takes is fine.
        assert!(parse("JBSWY3DPEHPK3PXP\n\" WINDOW_SIZE 3\n", p()).is_ok());
    }

    #[test]
    fn mode_and_step_come_from_the_options() {
        let f = parse("JBSWY3DPEHPK3PXP\n\" RATE_LIMIT 3 30\n\" STEP_SIZE 60\n", p()).unwrap();
        assert!(!f.is_totp(), "no TOTP_AUTH line: not TOTP mode");
        assert_eq!(f.step_size(), 60);
        let f = parse("JBSWY3DPEHPK3PXP\n\" TOTP_AUTH\n\" HOTP_COUNTER 4\n", p()).unwrap();
        assert!(!f.is_totp(), "HOTP_COUNTER wins over TOTP_AUTH");
    }

    #[test]
    fn only_eight_digit_lines_are_scratch_codes() {
        let f = parse("JBSWY3DPEHPK3PXP\n12345678\n010000000\n1234567\n", p()).unwrap();
        assert_eq!(f.scratch_codes().map(|c| c.0).collect::<Vec<_>>(), vec![12345678]);
    }

    #[test]
    fn a_changed_secret_is_written_anew() {
        let mut f = parse("jbsw y3dp ehpk 3pxp\n\" TOTP_AUTH\n", p()).unwrap();
        assert_eq!(&f.render()[..], "jbsw y3dp ehpk 3pxp\n\" TOTP_AUTH\n");
        f.secret = Zeroizing::new(b"abc".to_vec());
        assert_eq!(&f.render()[..], "MFRGG\n\" TOTP_AUTH\n");
    }

    fn option() -> impl Strategy<Value = GaOption> {
        prop_oneof![
            (
                1u32..100,
                1u32..3600,
                prop::collection::vec(any::<u32>().prop_map(u64::from), 0..5)
            )
                .prop_map(|(attempts, interval, timestamps)| GaOption::RateLimit {
                    attempts,
                    interval,
                    timestamps
                }),
            (1u32..100).prop_map(GaOption::WindowSize),
            prop::collection::vec(any::<u32>().prop_map(u64::from), 0..5).prop_map(GaOption::DisallowReuse),
            Just(GaOption::TotpAuth),
            Just(GaOption::OtpDisabled),
            any::<i64>().prop_map(GaOption::HotpCounter),
            (1u32..60).prop_map(GaOption::StepSize),
            any::<i32>().prop_map(|n| GaOption::TimeSkew(n.into())),
            prop::collection::vec((any::<u32>().prop_map(u64::from), -1000i64..1000), 0..4)
                .prop_map(GaOption::ResettingTimeSkew),
            "[!-~]{1,12}".prop_map(|s| GaOption::Password(Zeroizing::new(s))),
            "\" [A-Z]{1,5}_[A-Z]{1,5}( [0-9a-z.]{1,8}){0,3}".prop_map(GaOption::Unknown),
        ]
    }

    fn item() -> impl Strategy<Value = GaItem> {
        prop_oneof![
            3 => option().prop_map(GaItem::Option),
            2 => (10_000_000u32..100_000_000).prop_map(|c| GaItem::Scratch(ScratchCode(c))),
            1 => Just(GaItem::Other(String::new())),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

        #[test]
        fn prop_parse_render_parse(secret in prop::collection::vec(any::<u8>(), 1..40), items in prop::collection::vec(item(), 0..12)) {
            let mut f = GoogleAuthFile::new(Zeroizing::new(secret.clone()));
            f.lines = items.iter().cloned().map(GaLine::new).collect();
            let text = f.render();
            let g = parse(&text, p()).unwrap();
            prop_assert_eq!(&g.secret[..], &secret[..]);
            let got: Vec<GaItem> = g.lines.iter().map(|l| l.item.clone()).collect();
            prop_assert_eq!(got, items);
            prop_assert_eq!(&g.render()[..], &text[..]);
        }

        #[test]
        fn prop_text_identity(lines in prop::collection::vec(prop_oneof![
            "\" [A-Z_]{3,12}( [0-9]{1,6}){0,3}",
            "[0-9]{8}",
            "[ -~]{0,10}",
        ], 0..10), nl in any::<bool>()) {
            let mut text = String::from("jbsw y3dp ehpk 3pxp");
            for l in &lines { text.push('\n'); text.push_str(l); }
            if nl { text.push('\n'); }
            if let Ok(f) = parse(&text, p()) {
                prop_assert_eq!(&f.render()[..], &text[..]);
            }
        }
    }
}
