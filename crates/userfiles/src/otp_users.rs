//! mod_authn_otp users files and pam_oath `users.oath` files: parse, edit, render byte-identically, update under lock.
//!
//! # Shared layout
//!
//! One entry per line, fields separated by whitespace:
//! `TYPE USER PIN KEY [COUNTER ...]`. Lines whose first token starts with `#`, and
//! blank lines, are kept verbatim and are never entries — so a commented-out user is
//! never matched or rewritten (old pam_oath's `update_usersfile2` matched lines
//! without re-checking the type field).
//!
//! | # | name | meaning (both dialects) |
//! |---|------|---------|
//! | 1 | TYPE | token type, see below |
//! | 2 | USER | user name |
//! | 3 | PIN  | `-` no PIN, `+` PIN checked elsewhere (mod_authn_otp: `OTPAuthPINAuthProvider`; pam_oath: another PAM module), otherwise the literal PIN |
//! | 4 | KEY  | secret, an even number of hex digits |
//! | 5 | COUNTER | optional; see per dialect |
//!
//! # mod_authn_otp (`Dialect::ModAuthnOtp`)
//!
//! Sources: `mod_authn_otp.c` (`find_update_user`, `parse_token_type`, `print_user`,
//! `authn_otp_check_password`), `users.sample`, `UsersFile.md`, archiecobbs/mod-authn-otp.
//!
//! * TYPE is `ALGORITHM[/COUNTERINFO[/DIGITS]]`: ALGORITHM `HOTP` or `MOTP`
//!   (case-insensitive), COUNTERINFO `E` (event) or `T<secs>` (time), DIGITS 1–10.
//!   Defaults: HOTP is event-based, MOTP is `T10`; 6 digits. The legacy one-letter
//!   types `E` (= `HOTP/E`) and `T` (= `HOTP/T30`) are accepted.
//! * COUNTER (5): event tokens: the next expected counter (on success it becomes
//!   `counter + offset + 1`); time tokens: a signed offset in steps added to
//!   `now / interval` (on success the found window offset is added to it).
//! * Fields after 5 are told apart by how many there are (backward compatibility):
//!   1 → FAILCOUNT; 2 → LASTOTP LASTTIME; 3 → LASTOTP LASTTIME LASTIP;
//!   4 → FAILCOUNT LASTOTP LASTTIME LASTIP. `print_user` always writes COUNTER and
//!   FAILCOUNT, then `LASTOTP LASTTIME LASTIP` when there is a last OTP.
//! * FAILCOUNT: consecutive wrong OTPs (`OTPAuthMaxOTPFailure` locks the account).
//! * LASTOTP + LASTTIME implement linger and replay protection: the same OTP is
//!   accepted again only while `now` is in `[LASTTIME, LASTTIME + OTPAuthMaxLinger)`
//!   (default 600 s), and, with `OTPAuthLogoutOnIPChange`, only from LASTIP; an empty
//!   password from LASTIP "logs out" by clearing LASTOTP.
//! * LASTTIME is `strftime("%Y-%m-%dT%H:%M:%SL", localtime())` (e.g.
//!   `2009-06-12T17:52:32L`), or plain Unix seconds on builds without `strptime`;
//!   both are accepted and the entry keeps the style it was read with.
//! * Lock file `<users file>.lock` (`LOCKFILE_SUFFIX`); new file `<users file>.new`
//!   renamed over the original, mode 0600. Only the first line for a user counts.
//!
//! # pam_oath (`Dialect::PamOath`)
//!
//! Source: `liboath/usersfile.c` (`parse_type`, `parse_usersfile`,
//! `update_usersfile2`, `update_usersfile`), oath-toolkit.
//!
//! * TYPE is exactly one of `HOTP`, `HOTP/E`, `HOTP/E/6|7|8`, `HOTP/T30`,
//!   `HOTP/T30/6|7|8`, `HOTP/T60`, `HOTP/T60/6|7|8` (case-sensitive; there is no
//!   `TOTP` spelling and no MOTP). Lines with any other type are skipped by pam_oath;
//!   this crate reports them as errors instead of silently ignoring a user.
//! * COUNTER (5): the moving factor, unsigned decimal (`strtoull`). For event tokens
//!   it is the next counter; on success it becomes `counter + window position`. For
//!   time tokens it is *not* a time step: pam_oath writes `counter + |window position|`
//!   there, so treat it as opaque.
//! * LASTOTP (6): the last accepted OTP. Replay protection: the same OTP is refused;
//!   for time tokens pam_oath also locates LASTOTP in the current window and refuses
//!   any OTP whose step is not later — the last step is never stored explicitly.
//! * LASTTIME (7): `%Y-%m-%dT%H:%M:%SL` local time of the last success.
//! * On success the line is rewritten as `TYPE\tUSER\tPIN\tKEY\tCOUNTER\tLASTOTP\tLASTTIME`.
//!   A user may have several lines (tried in order; the matching one is updated).
//! * Lock file `<users file>.lock` (fcntl write lock, unlinked afterwards); new file
//!   `<users file>.new`, mode 0600, owner copied with `fchown`.
//!
//! # Time zone
//!
//! LASTTIME is wall-clock local time without an offset. This crate converts it with
//! a fixed UTC offset chosen by the caller ([`Format::utc_offset_secs`], default 0 =
//! the server runs in UTC). With the wrong offset, `last_time` is off by that offset
//! (linger windows shift); unchanged entries still round-trip byte-identically.
//!
//! # Writing
//!
//! [`update`] locks `<file>.lock` (flock — see [`crate::atomic`] for the interop
//! caveat), refuses symlinks, re-parses what it is about to write, and replaces the
//! file atomically with mode 0600. Unchanged entries keep their exact text; changed
//! entries keep their original separators and unchanged field spellings.

use std::fmt;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use crate::atomic::{self, LockGuard};
use crate::civil;
use crate::error::{Error, UpdateError};

/// Which tool's users file this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dialect {
    /// Apache mod_authn_otp (`OTPAuthUsersFile`).
    ModAuthnOtp,
    /// oath-toolkit's pam_oath / liboath (`usersfile=`), usually `/etc/users.oath`.
    PamOath,
}

impl Dialect {
    fn whitespace(self) -> &'static [char] {
        match self {
            // mod_authn_otp: WHITESPACE " \t\r\n\v"; liboath: " \t\r\n".
            Dialect::ModAuthnOtp => &[' ', '\t', '\r', '\n', '\x0b'],
            Dialect::PamOath => &[' ', '\t', '\r', '\n'],
        }
    }

    fn default_sep(self) -> &'static str {
        match self {
            Dialect::ModAuthnOtp => " ",
            Dialect::PamOath => "\t",
        }
    }
}

/// How to read a file: the dialect plus the UTC offset used for LASTTIME wall-clock values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Format {
    /// Which tool wrote the file.
    pub dialect: Dialect,
    /// Seconds east of UTC of the wall clock LASTTIME is written in (0 = UTC).
    pub utc_offset_secs: i32,
}

impl From<Dialect> for Format {
    fn from(dialect: Dialect) -> Self {
        Format {
            dialect,
            utc_offset_secs: 0,
        }
    }
}

/// Event- or time-based counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Step {
    /// Counter advances on each use (`E`).
    Event,
    /// Counter is `now / secs` (`T<secs>`).
    Time(u32),
}

/// Algorithm, counter kind and OTP length of an entry (field 1, TYPE).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EntryKind {
    /// RFC 4226 HOTP (RFC 6238 TOTP when `step` is `Time`).
    Hotp {
        /// OTP length in digits.
        digits: u8,
        /// Event or time based.
        step: Step,
    },
    /// Mobile-OTP (mod_authn_otp only).
    Motp {
        /// OTP length in (hex) digits.
        digits: u8,
        /// Event or time based.
        step: Step,
    },
}

/// Field 3: the PIN setting.
#[derive(Clone, PartialEq, Eq)]
pub enum Pin {
    /// `-`: the user has no PIN.
    None,
    /// `+`: the PIN is verified by another mechanism.
    External,
    /// A literal PIN stored in the file.
    Literal(Zeroizing<String>),
}

impl fmt::Debug for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pin::None => f.write_str("None"),
            Pin::External => f.write_str("External"),
            Pin::Literal(_) => f.write_str("Literal(<redacted>)"),
        }
    }
}

/// How a LASTTIME value was spelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TimeStyle {
    LocalL,
    Epoch,
}

#[derive(Clone, PartialEq, Eq)]
struct Snapshot {
    kind: EntryKind,
    user: String,
    pin: Pin,
    key: Zeroizing<Vec<u8>>,
    counter: Option<i64>,
    fail_count: Option<u32>,
    last_otp: Option<String>,
    last_time: Option<i64>,
    last_ip: Option<String>,
}

/// The text an entry was parsed from, so unchanged entries and fields are written back as they were.
#[derive(Clone)]
struct Original {
    snap: Snapshot,
    line: Zeroizing<String>,
    leading: String,
    seps: Vec<String>,
    trailing: String,
    type_text: String,
    key_text: Zeroizing<String>,
    counter_text: Option<String>,
    time_text: Option<String>,
    time_style: TimeStyle,
}

/// One user+token line.
#[derive(Clone)]
pub struct Entry {
    /// Field 1: algorithm, step and digits.
    pub kind: EntryKind,
    /// Field 2: user name.
    pub user: String,
    /// Field 3: PIN setting.
    pub pin: Pin,
    /// Field 4: the token secret.
    pub key: Zeroizing<Vec<u8>>,
    /// Field 5 as the file has it (event: next counter; time: offset or opaque, see module docs).
    pub counter: Option<i64>,
    /// mod_authn_otp only: consecutive OTP failures.
    pub fail_count: Option<u32>,
    /// Last accepted OTP (replay/linger state).
    pub last_otp: Option<String>,
    /// Time of the last accepted OTP, Unix seconds.
    pub last_time: Option<i64>,
    /// mod_authn_otp only: IP address of the last success.
    pub last_ip: Option<String>,
    original: Option<Original>,
}

impl fmt::Debug for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Entry")
            .field("kind", &self.kind)
            .field("user", &self.user)
            .field("pin", &self.pin)
            .field("key", &format_args!("<redacted {} bytes>", self.key.len()))
            .field("counter", &self.counter)
            .field("fail_count", &self.fail_count)
            .field("last_otp", &self.last_otp.as_ref().map(|_| "<redacted>"))
            .field("last_time", &self.last_time)
            .field("last_ip", &self.last_ip)
            .finish()
    }
}

impl Entry {
    /// A new entry with only the four mandatory fields.
    pub fn new(kind: EntryKind, user: impl Into<String>, pin: Pin, key: Zeroizing<Vec<u8>>) -> Self {
        Entry {
            kind,
            user: user.into(),
            pin,
            key,
            counter: None,
            fail_count: None,
            last_otp: None,
            last_time: None,
            last_ip: None,
            original: None,
        }
    }

    fn snapshot(&self) -> Snapshot {
        Snapshot {
            kind: self.kind,
            user: self.user.clone(),
            pin: self.pin.clone(),
            key: self.key.clone(),
            counter: self.counter,
            fail_count: self.fail_count,
            last_otp: self.last_otp.clone(),
            last_time: self.last_time,
            last_ip: self.last_ip.clone(),
        }
    }
}

/// One line of the file.
#[derive(Clone)]
#[allow(clippy::large_enum_variant)] // most lines are entries; boxing would only add an allocation each
pub enum Line {
    /// Comment, blank line or anything else kept verbatim (without its newline).
    Other(String),
    /// A user entry.
    Entry(Entry),
}

impl fmt::Debug for Line {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // A commented-out entry still holds a key, so never print comment text.
            Line::Other(s) => write!(f, "Other(<{} bytes>)", s.len()),
            Line::Entry(e) => f.debug_tuple("Entry").field(e).finish(),
        }
    }
}

/// A parsed users file; renders back byte-identically when nothing was changed.
#[derive(Debug, Clone)]
pub struct UsersFile {
    format: Format,
    /// The lines in file order.
    pub lines: Vec<Line>,
    trailing_newline: bool,
}

/// Something suspicious found while reading (no logging crate: the caller decides what to do).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Warning {
    /// The users file grants permissions to group or others (it holds secrets).
    LoosePermissions {
        /// The users file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The lock file could not be created, so the file was read without a shared lock.
    Unlocked {
        /// The lock file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Warning::LoosePermissions { path, mode } => write!(
                f,
                "{}: mode {:04o} lets group/others access OTP secrets; run chmod 600 on it",
                path.display(),
                mode & 0o7777
            ),
            Warning::Unlocked { path, reason } => {
                write!(f, "{}: read without a shared lock ({reason})", path.display())
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Parsing

struct Ctx<'a> {
    path: &'a Path,
    line: usize,
}

impl Ctx<'_> {
    fn err(&self, field: usize, name: &'static str, problem: impl Into<String>, hint: &'static str) -> Error {
        Error::Parse {
            path: self.path.to_owned(),
            line: self.line,
            field,
            name,
            problem: problem.into(),
            hint,
        }
    }
}

struct Split<'a> {
    leading: &'a str,
    tokens: Vec<&'a str>,
    seps: Vec<&'a str>,
    trailing: &'a str,
}

fn split_fields<'a>(line: &'a str, ws: &[char]) -> Split<'a> {
    let body_start = line.len() - line.trim_start_matches(ws).len();
    let leading = &line[..body_start];
    let mut tokens = Vec::new();
    let mut seps = Vec::new();
    let mut rest = &line[body_start..];
    let mut trailing = "";
    while !rest.is_empty() {
        let end = rest.find(ws).unwrap_or(rest.len());
        tokens.push(&rest[..end]);
        let after = &rest[end..];
        let sep_len = after.len() - after.trim_start_matches(ws).len();
        let sep = &after[..sep_len];
        rest = &after[sep_len..];
        if rest.is_empty() {
            trailing = sep;
        } else {
            seps.push(sep);
        }
    }
    Split {
        leading,
        tokens,
        seps,
        trailing,
    }
}

const TYPE_HINT_MOD: &str =
    "use ALGORITHM[/E|/T<secs>[/DIGITS]] with ALGORITHM HOTP or MOTP, e.g. HOTP, HOTP/E/8, HOTP/T30, HOTP/T60/5, MOTP";
const TYPE_HINT_OATH: &str =
    "use one of HOTP, HOTP/E, HOTP/E/6|7|8, HOTP/T30, HOTP/T30/6|7|8, HOTP/T60, HOTP/T60/6|7|8";

fn parse_type_mod(s: &str) -> Option<EntryKind> {
    let s = match s {
        "E" => "HOTP/E",
        "T" => "HOTP/T30",
        other => other,
    };
    let mut parts = s.split('/');
    let alg = parts.next()?;
    let (motp, mut step) = if alg.eq_ignore_ascii_case("HOTP") {
        (false, Step::Event)
    } else if alg.eq_ignore_ascii_case("MOTP") {
        (true, Step::Time(10))
    } else {
        return None;
    };
    let mut digits = 6u8;
    if let Some(ci) = parts.next() {
        if ci == "E" {
            step = Step::Event;
        } else {
            let n = ci.strip_prefix('T')?;
            if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let secs: u32 = n.parse().ok()?;
            if secs == 0 || secs > i32::MAX as u32 {
                return None;
            }
            step = Step::Time(secs);
        }
        if let Some(d) = parts.next() {
            if d.is_empty() || !d.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let n: u8 = d.parse().ok()?;
            if !(1..=10).contains(&n) {
                return None;
            }
            digits = n;
        }
    }
    if parts.next().is_some() {
        return None;
    }
    Some(if motp {
        EntryKind::Motp { digits, step }
    } else {
        EntryKind::Hotp { digits, step }
    })
}

fn parse_type_oath(s: &str) -> Option<EntryKind> {
    let (step, rest) = if s == "HOTP" {
        return Some(EntryKind::Hotp {
            digits: 6,
            step: Step::Event,
        });
    } else if let Some(r) = s.strip_prefix("HOTP/E") {
        (Step::Event, r)
    } else if let Some(r) = s.strip_prefix("HOTP/T30") {
        (Step::Time(30), r)
    } else if let Some(r) = s.strip_prefix("HOTP/T60") {
        (Step::Time(60), r)
    } else {
        return None;
    };
    let digits = match rest {
        "" | "/6" => 6,
        "/7" => 7,
        "/8" => 8,
        _ => return None,
    };
    Some(EntryKind::Hotp { digits, step })
}

fn canonical_type(kind: EntryKind, dialect: Dialect) -> String {
    let (alg, digits, step) = match kind {
        EntryKind::Hotp { digits, step } => ("HOTP", digits, step),
        EntryKind::Motp { digits, step } => ("MOTP", digits, step),
    };
    let ci = match step {
        Step::Event => "/E".to_owned(),
        Step::Time(s) => format!("/T{s}"),
    };
    match dialect {
        // print_user: drop defaults, but only when the digit count is the default too.
        Dialect::ModAuthnOtp => {
            if digits != 6 {
                format!("{alg}{ci}/{digits}")
            } else if (alg == "HOTP" && step == Step::Event) || (alg == "MOTP" && step == Step::Time(10)) {
                alg.to_owned()
            } else {
                format!("{alg}{ci}")
            }
        }
        Dialect::PamOath => match (step, digits) {
            (Step::Event, 6) => "HOTP".to_owned(),
            (_, 6) => format!("HOTP{ci}"),
            _ => format!("HOTP{ci}/{digits}"),
        },
    }
}

fn parse_hex_key(ctx: &Ctx<'_>, s: &str) -> Result<Zeroizing<Vec<u8>>, Error> {
    const HINT: &str = "write the secret as an even number of hex digits (0-9, a-f)";
    if let Some(pos) = s.bytes().position(|b| !b.is_ascii_hexdigit()) {
        return Err(ctx.err(
            4,
            "KEY",
            format!("is not hex (character {} of {} is not a hex digit)", pos + 1, s.len()),
            HINT,
        ));
    }
    if !s.len().is_multiple_of(2) {
        return Err(ctx.err(4, "KEY", format!("has an odd number ({}) of hex digits", s.len()), HINT));
    }
    let mut out = Zeroizing::new(Vec::with_capacity(s.len() / 2));
    for pair in s.as_bytes().chunks(2) {
        let hi = hex_val(pair[0]);
        let lo = hex_val(pair[1]);
        out.push((hi << 4) | lo);
    }
    Ok(out)
}

fn hex_val(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        b'A'..=b'F' => b - b'A' + 10,
        _ => 0,
    }
}

fn to_hex(bytes: &[u8]) -> Zeroizing<String> {
    const DIG: &[u8; 16] = b"0123456789abcdef";
    let mut s = Zeroizing::new(String::with_capacity(bytes.len() * 2));
    for b in bytes {
        s.push(char::from(DIG[usize::from(b >> 4)]));
        s.push(char::from(DIG[usize::from(b & 15)]));
    }
    s
}

fn parse_time(ctx: &Ctx<'_>, field: usize, s: &str, format: Format) -> Result<(i64, TimeStyle), Error> {
    if let Some(t) = civil::parse_local_l(s, format.utc_offset_secs) {
        return Ok((t, TimeStyle::LocalL));
    }
    if format.dialect == Dialect::ModAuthnOtp
        && !s.is_empty()
        && s.bytes().all(|b| b.is_ascii_digit())
        && let Ok(t) = s.parse::<i64>()
    {
        return Ok((t, TimeStyle::Epoch));
    }
    Err(ctx.err(
        field,
        "LASTTIME",
        format!("{s:?} is not a timestamp"),
        "write it as YYYY-MM-DDTHH:MM:SSL (local time, e.g. 2009-06-12T17:52:32L), or delete the last-OTP fields",
    ))
}

fn parse_entry(ctx: &Ctx<'_>, line: &str, format: Format) -> Result<Entry, Error> {
    let dialect = format.dialect;
    let sp = split_fields(line, dialect.whitespace());
    let t = &sp.tokens;
    let (kind, hint) = match dialect {
        Dialect::ModAuthnOtp => (parse_type_mod(t[0]), TYPE_HINT_MOD),
        Dialect::PamOath => (parse_type_oath(t[0]), TYPE_HINT_OATH),
    };
    let kind = kind.ok_or_else(|| ctx.err(1, "TYPE", format!("{:?} is not a token type", t[0]), hint))?;
    const MISSING: &str = "every entry needs at least TYPE USER PIN KEY";
    let user = t.get(1).ok_or_else(|| ctx.err(2, "USER", "is missing", MISSING))?;
    let pin_text = t.get(2).ok_or_else(|| ctx.err(3, "PIN", "is missing", MISSING))?;
    let key_text = t.get(3).ok_or_else(|| ctx.err(4, "KEY", "is missing", MISSING))?;
    let pin = match *pin_text {
        "-" => Pin::None,
        "+" => Pin::External,
        p => Pin::Literal(Zeroizing::new(p.to_owned())),
    };
    let key = parse_hex_key(ctx, key_text)?;

    let mut counter = None;
    if let Some(c) = t.get(4) {
        let v: i64 = c.parse().map_err(|_| {
            ctx.err(
                5,
                "COUNTER",
                format!("{c:?} is not an integer"),
                "write the next counter (event tokens) or the time-step offset (time tokens) as a decimal integer, or 0",
            )
        })?;
        if dialect == Dialect::PamOath && v < 0 {
            return Err(ctx.err(
                5,
                "COUNTER",
                format!("{c:?} is negative"),
                "pam_oath's moving factor is unsigned; write 0 or a positive integer",
            ));
        }
        counter = Some(v);
    }

    let extra = &t[t.len().min(5)..];
    let mut fail_count = None;
    let mut last_otp = None;
    let mut last_time = None;
    let mut last_ip = None;
    let mut time_text = None;
    let mut time_style = TimeStyle::LocalL;
    // Field numbers (1-based) of FAILCOUNT/LASTOTP/LASTTIME/LASTIP for this layout.
    let (fc_at, otp_at, time_at, ip_at): (Option<usize>, Option<usize>, Option<usize>, Option<usize>) = match dialect {
        Dialect::ModAuthnOtp => match extra.len() {
            0 => (None, None, None, None),
            1 => (Some(6), None, None, None),
            2 => (None, Some(6), Some(7), None),
            3 => (None, Some(6), Some(7), Some(8)),
            4 => (Some(6), Some(7), Some(8), Some(9)),
            _ => {
                return Err(ctx.err(
                    10,
                    "(extra)",
                    format!("the line has {} fields; mod_authn_otp reads at most 9", t.len()),
                    "delete the fields after LASTIP",
                ));
            }
        },
        Dialect::PamOath => match extra.len() {
            0 => (None, None, None, None),
            1 => (None, Some(6), None, None),
            2 => (None, Some(6), Some(7), None),
            _ => {
                return Err(ctx.err(
                    8,
                    "(extra)",
                    format!("the line has {} fields; pam_oath reads at most 7", t.len()),
                    "delete the fields after LASTTIME",
                ));
            }
        },
    };
    if let Some(i) = fc_at {
        let s = t[i - 1];
        fail_count = Some(s.parse::<u32>().map_err(|_| {
            ctx.err(
                i,
                "FAILCOUNT",
                format!("{s:?} is not a non-negative integer"),
                "write the number of consecutive OTP failures, or 0",
            )
        })?);
    }
    if let Some(i) = otp_at {
        last_otp = Some(t[i - 1].to_owned());
    }
    if let Some(i) = time_at {
        let s = t[i - 1];
        let (v, style) = parse_time(ctx, i, s, format)?;
        last_time = Some(v);
        time_style = style;
        time_text = Some(s.to_owned());
    }
    if let Some(i) = ip_at {
        last_ip = Some(t[i - 1].to_owned());
    }

    let mut e = Entry {
        kind,
        user: (*user).to_owned(),
        pin,
        key,
        counter,
        fail_count,
        last_otp,
        last_time,
        last_ip,
        original: None,
    };
    e.original = Some(Original {
        snap: e.snapshot(),
        line: Zeroizing::new(line.to_owned()),
        leading: sp.leading.to_owned(),
        seps: sp.seps.iter().map(|s| (*s).to_owned()).collect(),
        trailing: sp.trailing.to_owned(),
        type_text: t[0].to_owned(),
        key_text: Zeroizing::new((*key_text).to_owned()),
        counter_text: t.get(4).map(|s| (*s).to_owned()),
        time_text,
        time_style,
    });
    Ok(e)
}

fn is_passthrough(line: &str, ws: &[char]) -> bool {
    let body = line.trim_start_matches(ws);
    body.is_empty() || body.starts_with('#')
}

/// Parses a users file; `path` is only used in error messages.
pub fn parse(text: &str, format: impl Into<Format>, path: &Path) -> Result<UsersFile, Error> {
    let format = format.into();
    let ws = format.dialect.whitespace();
    let (body, trailing_newline) = match text.strip_suffix('\n') {
        Some(b) => (b, true),
        None => (text, false),
    };
    let mut lines = Vec::new();
    if !body.is_empty() || trailing_newline {
        for (i, l) in body.split('\n').enumerate() {
            if is_passthrough(l, ws) {
                lines.push(Line::Other(l.to_owned()));
            } else {
                let ctx = Ctx { path, line: i + 1 };
                lines.push(Line::Entry(parse_entry(&ctx, l, format)?));
            }
        }
    }
    Ok(UsersFile {
        format,
        lines,
        trailing_newline,
    })
}

// ---------------------------------------------------------------------------
// Rendering

fn render_entry(e: &Entry, format: Format, out: &mut String) {
    let dialect = format.dialect;
    let orig = e.original.as_ref();
    if let Some(o) = orig
        && o.snap == e.snapshot()
    {
        out.push_str(&o.line);
        return;
    }
    let snap = orig.map(|o| &o.snap);
    let mut fields: Vec<Zeroizing<String>> = Vec::with_capacity(9);
    let type_text = match orig {
        Some(o) if o.snap.kind == e.kind => o.type_text.clone(),
        _ => canonical_type(e.kind, dialect),
    };
    fields.push(Zeroizing::new(type_text));
    fields.push(Zeroizing::new(e.user.clone()));
    fields.push(match &e.pin {
        Pin::None => Zeroizing::new("-".to_owned()),
        Pin::External => Zeroizing::new("+".to_owned()),
        Pin::Literal(p) => p.clone(),
    });
    fields.push(match orig {
        Some(o) if o.snap.key == e.key => o.key_text.clone(),
        _ => to_hex(&e.key),
    });
    let counter_text = |c: i64| match orig {
        Some(o) if snap.map(|s| s.counter) == Some(Some(c)) => o.counter_text.clone().unwrap_or_else(|| c.to_string()),
        _ => c.to_string(),
    };
    let time_text = |t: i64| match orig {
        Some(o) if snap.map(|s| s.last_time) == Some(Some(t)) && o.time_text.is_some() => {
            o.time_text.clone().unwrap_or_default()
        }
        Some(o) if o.time_style == TimeStyle::Epoch && dialect == Dialect::ModAuthnOtp => t.to_string(),
        _ => civil::format_local_l(t, format.utc_offset_secs),
    };
    let has_later = e.fail_count.is_some() || e.last_otp.is_some() || e.last_time.is_some() || e.last_ip.is_some();
    if let Some(c) = e.counter {
        fields.push(Zeroizing::new(counter_text(c)));
    } else if has_later {
        // Not representable; `check` rejects it before any write. Keep positions sane anyway.
        fields.push(Zeroizing::new("0".to_owned()));
    }
    let push_opt = |fields: &mut Vec<Zeroizing<String>>, v: &Option<String>| {
        if let Some(v) = v {
            fields.push(Zeroizing::new(v.clone()));
        }
    };
    match dialect {
        Dialect::ModAuthnOtp => {
            if let Some(fc) = e.fail_count {
                fields.push(Zeroizing::new(fc.to_string()));
            }
            push_opt(&mut fields, &e.last_otp);
            if let Some(t) = e.last_time {
                fields.push(Zeroizing::new(time_text(t)));
            }
            push_opt(&mut fields, &e.last_ip);
        }
        Dialect::PamOath => {
            push_opt(&mut fields, &e.last_otp);
            if let Some(t) = e.last_time {
                fields.push(Zeroizing::new(time_text(t)));
            }
        }
    }
    if let Some(o) = orig {
        out.push_str(&o.leading);
    }
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            let sep = orig
                .and_then(|o| o.seps.get(i - 1))
                .map(String::as_str)
                .unwrap_or(dialect.default_sep());
            out.push_str(sep);
        }
        out.push_str(f);
    }
    if let Some(o) = orig {
        out.push_str(&o.trailing);
    }
}

/// Empty, or split by the dialect's whitespace (which includes the newline).
fn bad_token(s: &str, ws: &[char]) -> bool {
    s.is_empty() || s.contains(ws)
}

impl UsersFile {
    /// An empty file in the given format.
    pub fn new(format: impl Into<Format>) -> Self {
        UsersFile {
            format: format.into(),
            lines: Vec::new(),
            trailing_newline: true,
        }
    }

    /// The dialect and time-zone choice this file was parsed with.
    pub fn format(&self) -> Format {
        self.format
    }

    /// Serialises the file; byte-identical to the parsed text for everything unchanged.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for (i, line) in self.lines.iter().enumerate() {
            if i > 0 {
                out.push('\n');
            }
            match line {
                Line::Other(s) => out.push_str(s),
                Line::Entry(e) => render_entry(e, self.format, &mut out),
            }
        }
        if self.trailing_newline && !self.lines.is_empty() {
            out.push('\n');
        }
        out
    }

    /// All entries in file order.
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.lines.iter().filter_map(|l| match l {
            Line::Entry(e) => Some(e),
            Line::Other(_) => None,
        })
    }

    /// All entries in file order, mutably.
    pub fn entries_mut(&mut self) -> impl Iterator<Item = &mut Entry> {
        self.lines.iter_mut().filter_map(|l| match l {
            Line::Entry(e) => Some(e),
            Line::Other(_) => None,
        })
    }

    /// Every entry for `user` in file order (pam_oath tries them all; mod_authn_otp uses only the first).
    pub fn entries_for<'a>(&'a self, user: &'a str) -> impl Iterator<Item = &'a Entry> + 'a {
        self.entries().filter(move |e| e.user == user)
    }

    /// Mutable version of [`UsersFile::entries_for`].
    pub fn entries_for_mut<'a>(&'a mut self, user: &'a str) -> impl Iterator<Item = &'a mut Entry> + 'a {
        self.entries_mut().filter(move |e| e.user == user)
    }

    /// Appends an entry as a new last line.
    pub fn push_entry(&mut self, entry: Entry) {
        self.lines.push(Line::Entry(entry));
        self.trailing_newline = true;
    }

    /// Checks every entry can be written so the original tool reads back the same values.
    pub fn check(&self, path: &Path) -> Result<(), Error> {
        let dialect = self.format.dialect;
        let ws = dialect.whitespace();
        for e in self.entries() {
            let bad = |problem: &str, hint: &'static str| Error::Unrepresentable {
                path: path.to_owned(),
                user: e.user.clone(),
                problem: problem.to_owned(),
                hint,
            };
            if bad_token(&e.user, ws) || e.user.starts_with('#') {
                return Err(bad(
                    "the user name is empty, has whitespace or starts with '#'",
                    "use a plain user name",
                ));
            }
            if let Pin::Literal(p) = &e.pin
                && (bad_token(p, ws) || p.as_str() == "-" || p.as_str() == "+")
            {
                return Err(bad(
                    "the PIN is empty, has whitespace or is '-'/'+'",
                    "use Pin::None/Pin::External or a PIN without whitespace",
                ));
            }
            if e.key.is_empty() {
                return Err(bad("the key is empty", "set a non-empty key"));
            }
            for v in [&e.last_otp, &e.last_ip].into_iter().flatten() {
                if bad_token(v, ws) {
                    return Err(bad("LASTOTP/LASTIP is empty or has whitespace", "store a single token"));
                }
            }
            let later = e.fail_count.is_some() || e.last_otp.is_some() || e.last_time.is_some() || e.last_ip.is_some();
            if later && e.counter.is_none() {
                return Err(bad(
                    "fields after COUNTER are set but COUNTER is not",
                    "set counter (0 is the tools' default)",
                ));
            }
            if e.last_time.is_some() && e.last_otp.is_none() {
                return Err(bad("LASTTIME is set without LASTOTP", "set both or neither"));
            }
            if let Some(t) = e.last_time {
                let s = civil::format_local_l(t, self.format.utc_offset_secs);
                if s.len() != 20 {
                    return Err(bad("LASTTIME is outside years 0000-9999", "use a realistic timestamp"));
                }
            }
            match dialect {
                Dialect::ModAuthnOtp => {
                    let ok_kind = match e.kind {
                        EntryKind::Hotp { digits, step } | EntryKind::Motp { digits, step } => {
                            (1..=10).contains(&digits) && step != Step::Time(0)
                        }
                    };
                    if !ok_kind {
                        return Err(bad(
                            "the token type is invalid",
                            "digits must be 1-10 and the time step positive",
                        ));
                    }
                    if e.last_otp.is_some() != e.last_time.is_some() {
                        return Err(bad("LASTOTP is set without LASTTIME", "set both or neither"));
                    }
                    if e.last_ip.is_some() && e.last_otp.is_none() {
                        return Err(bad(
                            "LASTIP is set without LASTOTP",
                            "set LASTOTP/LASTTIME too, or clear LASTIP",
                        ));
                    }
                    if e.fail_count.is_some() && e.last_otp.is_some() && e.last_ip.is_none() {
                        return Err(bad(
                            "FAILCOUNT, LASTOTP and LASTTIME without LASTIP would be read back as LASTOTP LASTTIME LASTIP",
                            "also set last_ip, or clear fail_count",
                        ));
                    }
                }
                Dialect::PamOath => {
                    let ok_kind = matches!(
                        e.kind,
                        EntryKind::Hotp {
                            digits: 6..=8,
                            step: Step::Event | Step::Time(30) | Step::Time(60)
                        }
                    );
                    if !ok_kind {
                        return Err(bad("pam_oath cannot express this token type", TYPE_HINT_OATH));
                    }
                    if e.fail_count.is_some() || e.last_ip.is_some() {
                        return Err(bad(
                            "pam_oath files have no FAILCOUNT or LASTIP field",
                            "clear fail_count and last_ip",
                        ));
                    }
                    if e.counter.is_some_and(|c| c < 0) {
                        return Err(bad("pam_oath's counter is unsigned", "use a non-negative counter"));
                    }
                }
            }
        }
        Ok(())
    }

    fn same_content(&self, other: &UsersFile) -> bool {
        self.lines.len() == other.lines.len()
            && self.lines.iter().zip(&other.lines).all(|(a, b)| match (a, b) {
                (Line::Other(x), Line::Other(y)) => x == y,
                (Line::Entry(x), Line::Entry(y)) => x.snapshot() == y.snapshot(),
                _ => false,
            })
    }
}

// ---------------------------------------------------------------------------
// File access

fn read_text(path: &Path) -> Result<(String, u32), Error> {
    let mut file = atomic::open_read_nofollow(path, "users file")?;
    let mode = file
        .metadata()
        .map_err(|e| Error::io(path, "stat", e))?
        .permissions()
        .mode();
    let mut text = String::new();
    file.read_to_string(&mut text)
        .map_err(|e| Error::io(path, "read (must be UTF-8 text)", e))?;
    Ok((text, mode))
}

/// Locks `<path>.lock` the way the file's own tool does. pam_oath creates its lock file
/// with `O_EXCL`, refuses to start while one exists (`fopen(lockfile, "wx")` since liboath
/// 2.6.12) and removes it after each update, so for its files the lock is the file's
/// existence ([`LockGuard::created`]); mod_authn_otp keeps its lock file and record-locks it,
/// and removing it would let two of its processes lock different inodes.
fn lock_like_the_tool(lock_path: &Path, dialect: Dialect, write: bool) -> Result<LockGuard, Error> {
    match (dialect, write) {
        (Dialect::PamOath, _) => LockGuard::created(lock_path),
        (Dialect::ModAuthnOtp, true) => LockGuard::exclusive(lock_path),
        (Dialect::ModAuthnOtp, false) => LockGuard::shared(lock_path),
    }
}

/// Reads and parses `path` under a lock on `<path>.lock`; returns warnings such as loose
/// permissions. mod_authn_otp's lock file stays, so readers share it; pam_oath's is removed
/// after use, which only an exclusive holder may do safely, so its readers take it alone.
///
/// A missing file is [`Error::NotFound`] before any lock is taken, so reading a wrong path
/// leaves no `<path>.lock` behind. (Should the file vanish between that check and the
/// read, the read reports it the same way; mod_authn_otp's own lock file may then stay, as
/// mod_authn_otp leaves it anyway.)
pub fn read(path: &Path, format: impl Into<Format>) -> Result<(UsersFile, Vec<Warning>), Error> {
    let format = format.into();
    // Also refuses a symlink or a directory before anything is created beside it.
    drop(atomic::open_read_nofollow(path, "users file")?);
    let lock_path = atomic::lock_path_for(path);
    let mut warnings = Vec::new();
    let _guard = match lock_like_the_tool(&lock_path, format.dialect, false) {
        Ok(g) => Some(g),
        // Writers replace the file by rename, so an unlocked read still sees a whole file.
        Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::PermissionDenied => {
            warnings.push(Warning::Unlocked {
                path: lock_path.clone(),
                reason: source.to_string(),
            });
            None
        }
        Err(e) => return Err(e),
    };
    let (text, mode) = read_text(path)?;
    if mode & 0o077 != 0 {
        warnings.push(Warning::LoosePermissions {
            path: path.to_owned(),
            mode,
        });
    }
    let file = parse(&text, format, path)?;
    Ok((file, warnings))
}

/// Locks, reads, lets `f` edit, and atomically rewrites `path` only if the rendered text changed.
///
/// Nothing is written when parsing, `f`, or the representability check fails. The
/// rewritten file is mode 0600. Temp files left by crashed writers are removed.
pub fn update<R, E>(
    path: &Path,
    format: impl Into<Format>,
    f: impl FnOnce(&mut UsersFile) -> Result<R, E>,
) -> Result<R, UpdateError<E>> {
    let format = format.into();
    let mut guard = lock_like_the_tool(&atomic::lock_path_for(path), format.dialect, true)?;
    atomic::remove_stale_temps(path)?;
    let (text, _mode) = read_text(path)?;
    let mut file = parse(&text, format, path)?;
    let r = f(&mut file).map_err(UpdateError::Callback)?;
    // Checked even when nothing changed on disk, so a value the dialect cannot store is reported, not dropped.
    file.check(path)?;
    let new_text = file.render();
    if new_text == text {
        return Ok(r);
    }
    // Never write what we could not read back identically.
    let reparsed = parse(&new_text, format, path)?;
    if !reparsed.same_content(&file) {
        return Err(UpdateError::Store(Error::Unrepresentable {
            path: path.to_owned(),
            user: String::new(),
            problem: "the rendered file does not parse back to the same content".to_owned(),
            hint: "check Line::Other values for newlines or text that looks like an entry",
        }));
    }
    atomic::write_atomic(path, new_text.as_bytes())?;
    guard.linger_after_write();
    Ok(r)
}

#[cfg(test)]
mod tests;
