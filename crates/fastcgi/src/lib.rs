//! A small, hardened FastCGI reader and writer for the one exchange Apache's
//! mod_authnz_fcgi makes: `BEGIN_REQUEST` (role AUTHORIZER, no keep-alive), `PARAMS`
//! records ended by an empty one, and no `STDIN`; the answer is CGI headers on `STDOUT`
//! and an `END_REQUEST`. Everything else is refused: the input is bounded (record size,
//! total parameter bytes, parameter and record counts) and never makes the parser panic.
//!
//! The parsing is synchronous and does no I/O: [`Parser`] takes bytes as they arrive,
//! [`parse_request`] a whole buffer (what the fuzz target drives), and the async
//! [`read_request`] (feature `tokio`, on by default) only reads a connection into a
//! [`Parser`] under time limits.

use std::collections::HashMap;
#[cfg(feature = "tokio")]
use std::time::Duration;
#[cfg(feature = "tokio")]
use tokio::io::{AsyncRead, AsyncReadExt};

/// The FastCGI protocol version.
const VERSION: u8 = 1;
/// Record types used here.
const BEGIN_REQUEST: u8 = 1;
const ABORT_REQUEST: u8 = 2;
const END_REQUEST: u8 = 3;
const PARAMS: u8 = 4;
const STDIN: u8 = 5;
const STDOUT: u8 = 6;
/// The authorizer role (the only one served).
const ROLE_AUTHORIZER: u16 = 2;

/// Upper bound of the parameter bytes of one request (Apache sends a few KiB).
pub const MAX_PARAMS_BYTES: usize = 64 * 1024;
/// Upper bound of the number of parameters.
pub const MAX_PARAMS: usize = 512;
/// Upper bound of the records of one request, ignored `STDIN` ones included (Apache sends
/// PARAMS 16 KiB at a time).
pub const MAX_RECORDS: usize = 64;
/// A record header's length.
const HEADER_LEN: usize = 8;

/// Why a FastCGI request was refused; carries no request data (it may hold secrets).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FcgiError {
    /// The peer closed the connection in the middle of a record.
    #[error("truncated input: the connection ended inside a record")]
    Truncated,
    /// The connection was idle for too long.
    #[error("timed out waiting for the request")]
    Timeout,
    /// A record header with another version than 1.
    #[error("unsupported FastCGI version {0}")]
    Version(u8),
    /// The first record was not `BEGIN_REQUEST`, or a second one came.
    #[error("unexpected record type {0} at this point")]
    Unexpected(u8),
    /// A role other than AUTHORIZER.
    #[error("role {0} is not served (only AUTHORIZER, as mod_authnz_fcgi sends)")]
    Role(u16),
    /// A record for another request id than the one begun.
    #[error("record for request id {got}, expected {expected}")]
    RequestId {
        /// The id begun.
        expected: u16,
        /// The id in the record.
        got: u16,
    },
    /// A malformed record body.
    #[error("malformed {0}")]
    Malformed(&'static str),
    /// More parameter bytes, parameters or records than allowed.
    #[error("request too large: {0}")]
    TooLarge(&'static str),
    /// The peer aborted the request.
    #[error("the peer aborted the request")]
    Aborted,
    /// A read failed.
    #[error("read failed: {0}")]
    Io(String),
    /// More input was fed after the request was complete.
    #[error("input after the end of the request")]
    AfterEnd,
}

/// One authorizer request: its id and its CGI parameters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request {
    /// The request id to answer with.
    pub id: u16,
    /// CGI variables (names are ASCII; values are kept as sent, lossily decoded).
    pub params: HashMap<String, String>,
}

impl Request {
    /// A parameter, if present.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str)
    }
}

/// Builds a request from records, in the order they arrive.
#[derive(Default)]
struct Assembler {
    id: Option<u16>,
    raw: Vec<u8>,
    records: usize,
}

impl Assembler {
    /// Takes one record; returns the request once its parameters are complete.
    fn record(&mut self, kind: u8, id: u16, body: &[u8]) -> Result<Option<Request>, FcgiError> {
        self.records += 1;
        if self.records > MAX_RECORDS {
            return Err(FcgiError::TooLarge("too many records"));
        }
        if kind == STDIN {
            // Not sent by mod_authnz_fcgi; tolerated (and ignored) from other clients, but
            // counted, so a stream of them cannot keep a connection busy.
            return Ok(None);
        }
        let Some(expected) = self.id else {
            if kind != BEGIN_REQUEST {
                return Err(FcgiError::Unexpected(kind));
            }
            let [r0, r1, _flags, ..] = *body else {
                return Err(FcgiError::Malformed("BEGIN_REQUEST body"));
            };
            if body.len() != 8 {
                return Err(FcgiError::Malformed("BEGIN_REQUEST body"));
            }
            let role = u16::from_be_bytes([r0, r1]);
            if role != ROLE_AUTHORIZER {
                return Err(FcgiError::Role(role));
            }
            if id == 0 {
                return Err(FcgiError::Malformed("request id 0 (management records are not served)"));
            }
            self.id = Some(id);
            return Ok(None);
        };
        if id != expected {
            return Err(FcgiError::RequestId { expected, got: id });
        }
        match kind {
            PARAMS if body.is_empty() => {
                let params = parse_pairs(&self.raw)?;
                Ok(Some(Request { id, params }))
            }
            PARAMS => {
                if self.raw.len() + body.len() > MAX_PARAMS_BYTES {
                    return Err(FcgiError::TooLarge("parameters exceed 64 KiB"));
                }
                self.raw.extend_from_slice(body);
                Ok(None)
            }
            ABORT_REQUEST => Err(FcgiError::Aborted),
            other => Err(FcgiError::Unexpected(other)),
        }
    }
}

/// Reads one name or value length (1 byte, or 4 with the top bit set).
fn length(input: &[u8], at: &mut usize) -> Result<usize, FcgiError> {
    let first = *input.get(*at).ok_or(FcgiError::Malformed("parameter length"))?;
    if first & 0x80 == 0 {
        *at += 1;
        return Ok(usize::from(first));
    }
    let b = input
        .get(*at..*at + 4)
        .ok_or(FcgiError::Malformed("parameter length"))?;
    *at += 4;
    let n = u32::from_be_bytes([b[0] & 0x7f, b[1], b[2], b[3]]);
    usize::try_from(n).map_err(|_| FcgiError::Malformed("parameter length"))
}

/// Decodes FastCGI name-value pairs.
fn parse_pairs(input: &[u8]) -> Result<HashMap<String, String>, FcgiError> {
    let mut out = HashMap::new();
    let mut at = 0;
    while at < input.len() {
        let name_len = length(input, &mut at)?;
        let value_len = length(input, &mut at)?;
        let end_name = at
            .checked_add(name_len)
            .filter(|&e| e <= input.len())
            .ok_or(FcgiError::Malformed("parameter name length"))?;
        let end_value = end_name
            .checked_add(value_len)
            .filter(|&e| e <= input.len())
            .ok_or(FcgiError::Malformed("parameter value length"))?;
        let name = &input[at..end_name];
        if name.is_empty() || !name.iter().all(|b| b.is_ascii_graphic()) {
            return Err(FcgiError::Malformed("parameter name"));
        }
        if out.len() >= MAX_PARAMS {
            return Err(FcgiError::TooLarge("too many parameters"));
        }
        out.insert(
            String::from_utf8_lossy(name).into_owned(),
            String::from_utf8_lossy(&input[end_name..end_value]).into_owned(),
        );
        at = end_value;
    }
    Ok(out)
}

/// Splits a record header: (type, request id, content length, padding length).
fn header(h: &[u8; 8]) -> Result<(u8, u16, usize, usize), FcgiError> {
    if h[0] != VERSION {
        return Err(FcgiError::Version(h[0]));
    }
    Ok((
        h[1],
        u16::from_be_bytes([h[2], h[3]]),
        usize::from(u16::from_be_bytes([h[4], h[5]])),
        usize::from(h[6]),
    ))
}

/// An incremental request parser: feed it bytes as they arrive, in pieces of any size.
/// It holds at most one unfinished record; complete records go straight to the checks.
#[derive(Default)]
pub struct Parser {
    asm: Assembler,
    /// The start of a record whose end has not arrived yet.
    pending: Vec<u8>,
    done: bool,
}

impl Parser {
    /// A parser waiting for `BEGIN_REQUEST`.
    pub fn new() -> Self {
        Parser::default()
    }

    /// Takes the next bytes: `Ok(Some(request))` once the empty `PARAMS` record that ends it
    /// has arrived (bytes after it in the same piece are ignored), `Ok(None)` while more is
    /// needed, or the first fault found. After a request or an error, feeding more is an error.
    pub fn feed(&mut self, input: &[u8]) -> Result<Option<Request>, FcgiError> {
        if self.done {
            return Err(FcgiError::AfterEnd);
        }
        let result = self.feed_inner(input);
        if !matches!(result, Ok(None)) {
            self.done = true;
            self.pending = Vec::new();
        }
        result
    }

    fn feed_inner(&mut self, mut input: &[u8]) -> Result<Option<Request>, FcgiError> {
        // First finish the record begun in an earlier piece.
        while !self.pending.is_empty() {
            let have = self.pending.len();
            match record_len(&self.pending)? {
                Some(len) if have == len => {
                    let record = std::mem::take(&mut self.pending);
                    if let Some(req) = self.record(&record)? {
                        return Ok(Some(req));
                    }
                }
                want => {
                    if input.is_empty() {
                        return Ok(None);
                    }
                    // `have` is below `want`: never more than the record is taken.
                    let take = (want.unwrap_or(HEADER_LEN) - have).min(input.len());
                    self.pending.extend_from_slice(&input[..take]);
                    input = &input[take..];
                }
            }
        }
        // Then every whole record of this piece, without copying it.
        loop {
            match record_len(input)? {
                Some(len) if input.len() >= len => {
                    let (record, rest) = input.split_at(len);
                    if let Some(req) = self.record(record)? {
                        return Ok(Some(req));
                    }
                    input = rest;
                }
                _ => {
                    self.pending.extend_from_slice(input);
                    return Ok(None);
                }
            }
        }
    }

    /// One whole record: header, body and padding.
    fn record(&mut self, record: &[u8]) -> Result<Option<Request>, FcgiError> {
        let Some((h, rest)) = record.split_first_chunk::<HEADER_LEN>() else {
            return Err(FcgiError::Truncated);
        };
        let (kind, id, len, _pad) = header(h)?;
        let body = rest.get(..len).ok_or(FcgiError::Truncated)?;
        self.asm.record(kind, id, body)
    }
}

/// The whole length (header, body, padding) of the record `input` begins with, once its
/// header is there; a header with another version is refused at once.
fn record_len(input: &[u8]) -> Result<Option<usize>, FcgiError> {
    let Some(h) = input.first_chunk::<HEADER_LEN>() else {
        return Ok(None);
    };
    let (_, _, len, pad) = header(h)?;
    Ok(Some(HEADER_LEN + len + pad))
}

/// Parses a whole request from bytes already read: the one-shot form of [`Parser`], and
/// what the fuzz target drives. Input ending before the request does is `Truncated`.
pub fn parse_request(input: &[u8]) -> Result<Request, FcgiError> {
    Parser::new().feed(input)?.ok_or(FcgiError::Truncated)
}

/// Reads one request from a connection into a [`Parser`], each read bounded by `idle`, the
/// whole by `total`. Reads never go past what one request needs by more than one buffer;
/// mod_authnz_fcgi sends nothing after it anyway (it waits for the answer).
#[cfg(feature = "tokio")]
pub async fn read_request<R: AsyncRead + Unpin>(
    conn: &mut R,
    idle: Duration,
    total: Duration,
) -> Result<Request, FcgiError> {
    let work = async {
        let mut parser = Parser::new();
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match tokio::time::timeout(idle, conn.read(&mut buf)).await {
                Err(_) => return Err(FcgiError::Timeout),
                Ok(Err(e)) => return Err(FcgiError::Io(e.kind().to_string())),
                Ok(Ok(0)) => return Err(FcgiError::Truncated),
                Ok(Ok(n)) => n,
            };
            if let Some(req) = parser.feed(&buf[..n])? {
                return Ok(req);
            }
        }
    };
    tokio::time::timeout(total, work)
        .await
        .unwrap_or(Err(FcgiError::Timeout))
}

fn push_record(out: &mut Vec<u8>, kind: u8, id: u16, body: &[u8]) {
    let len = u16::try_from(body.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&[VERSION, kind]);
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&body[..usize::from(len)]);
}

/// Encodes the answer: `stdout` (CGI headers and optional body) in `STDOUT` records, the
/// empty `STDOUT` that ends it, and `END_REQUEST` (application status 0, request complete).
pub fn encode_response(id: u16, stdout: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(stdout.len() + 40);
    for chunk in stdout.chunks(0xffff) {
        push_record(&mut out, STDOUT, id, chunk);
    }
    push_record(&mut out, STDOUT, id, &[]);
    push_record(&mut out, END_REQUEST, id, &[0, 0, 0, 0, 0, 0, 0, 0]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn record(kind: u8, id: u16, body: &[u8], pad: u8) -> Vec<u8> {
        let mut v = vec![1, kind];
        v.extend_from_slice(&id.to_be_bytes());
        v.extend_from_slice(&(body.len() as u16).to_be_bytes());
        v.extend_from_slice(&[pad, 0]);
        v.extend_from_slice(body);
        v.extend(std::iter::repeat_n(0xAA, pad as usize));
        v
    }

    fn pair(name: &str, value: &str) -> Vec<u8> {
        let mut v = Vec::new();
        for len in [name.len(), value.len()] {
            if len < 128 {
                v.push(len as u8);
            } else {
                v.extend_from_slice(&((len as u32) | 0x8000_0000).to_be_bytes());
            }
        }
        v.extend_from_slice(name.as_bytes());
        v.extend_from_slice(value.as_bytes());
        v
    }

    fn begin(id: u16, role: u16) -> Vec<u8> {
        let mut b = role.to_be_bytes().to_vec();
        b.extend_from_slice(&[0; 6]);
        record(BEGIN_REQUEST, id, &b, 0)
    }

    /// What mod_authnz_fcgi sends: begin, params (possibly split), empty params.
    fn apache_request(pairs: &[(&str, &str)]) -> Vec<u8> {
        let mut body = Vec::new();
        for (n, v) in pairs {
            body.extend(pair(n, v));
        }
        let mut v = begin(1, ROLE_AUTHORIZER);
        let (a, b) = body.split_at(body.len() / 2);
        v.extend(record(PARAMS, 1, a, 3));
        v.extend(record(PARAMS, 1, b, 0));
        v.extend(record(PARAMS, 1, &[], 0));
        v
    }

    #[test]
    fn the_limits_admit_exactly_their_size() {
        // MAX_RECORDS records in all: begin, MAX_RECORDS - 2 parameter records, the empty one.
        let mut v = begin(1, ROLE_AUTHORIZER);
        for i in 0..MAX_RECORDS - 2 {
            v.extend(record(PARAMS, 1, &pair(&format!("P{i}"), "x"), 0));
        }
        v.extend(record(PARAMS, 1, &[], 0));
        assert_eq!(parse_request(&v).unwrap().param("P0"), Some("x"));
        let mut over = begin(1, ROLE_AUTHORIZER);
        for i in 0..MAX_RECORDS - 1 {
            over.extend(record(PARAMS, 1, &pair(&format!("P{i}"), "x"), 0));
        }
        over.extend(record(PARAMS, 1, &[], 0));
        assert!(matches!(
            parse_request(&over),
            Err(FcgiError::TooLarge("too many records"))
        ));

        // Parameters of exactly MAX_PARAMS_BYTES, in records of at most 65535 bytes.
        let name_len = 10;
        let value = "v".repeat(MAX_PARAMS_BYTES - name_len - 1 - 4);
        let body = pair(&"N".repeat(name_len), &value);
        assert_eq!(body.len(), MAX_PARAMS_BYTES);
        let fit = |body: &[u8]| {
            let mut v = begin(1, ROLE_AUTHORIZER);
            for chunk in body.chunks(60_000) {
                v.extend(record(PARAMS, 1, chunk, 0));
            }
            v.extend(record(PARAMS, 1, &[], 0));
            parse_request(&v)
        };
        assert_eq!(
            fit(&body).unwrap().param(&"N".repeat(name_len)).map(str::len),
            Some(value.len())
        );
        let body = pair(&"N".repeat(name_len + 1), &value);
        assert!(matches!(fit(&body), Err(FcgiError::TooLarge(_))));
    }

    #[test]
    fn parses_what_apache_sends() {
        let long = "x".repeat(300);
        let bytes = apache_request(&[
            ("FCGI_APACHE_ROLE", "AUTHENTICATOR"),
            ("HTTP_COOKIE", "a=b; portcullis_session=abc"),
            ("LONG", &long),
            ("EMPTY", ""),
        ]);
        let req = parse_request(&bytes).unwrap();
        assert_eq!(req.id, 1);
        assert_eq!(req.param("FCGI_APACHE_ROLE"), Some("AUTHENTICATOR"));
        assert_eq!(req.param("LONG"), Some(long.as_str()));
        assert_eq!(req.param("EMPTY"), Some(""));
        assert_eq!(req.param("MISSING"), None);
    }

    #[test]
    fn pieces_of_any_size_give_the_same_request() {
        let bytes = apache_request(&[("REMOTE_USER", "alice"), ("LONG", &"y".repeat(1000))]);
        let whole = parse_request(&bytes).unwrap();
        for size in [1, 2, 7, 8, 9, 100, 1031] {
            let mut p = Parser::new();
            let mut got = None;
            for piece in bytes.chunks(size) {
                if let Some(r) = p.feed(piece).unwrap() {
                    got = Some(r);
                }
            }
            assert_eq!(got.as_ref(), Some(&whole), "pieces of {size}");
            assert_eq!(p.feed(b"x"), Err(FcgiError::AfterEnd));
        }
        // Empty pieces are fine; the end of the input before the end of the request is not.
        let mut p = Parser::new();
        assert_eq!(p.feed(&[]), Ok(None));
        assert_eq!(p.feed(&bytes[..5]), Ok(None));
        assert_eq!(p.feed(&[]), Ok(None));
        assert_eq!(p.feed(&bytes[5..]), Ok(Some(whole)));
    }

    #[cfg(feature = "tokio")]
    #[tokio::test]
    async fn async_reader_agrees_and_times_out() {
        let bytes = apache_request(&[("REMOTE_ADDR", "127.0.0.1")]);
        let mut r = &bytes[..];
        let req = read_request(&mut r, Duration::from_secs(1), Duration::from_secs(1))
            .await
            .unwrap();
        assert_eq!(req.param("REMOTE_ADDR"), Some("127.0.0.1"));
        let mut short = &bytes[..bytes.len() - 3];
        assert_eq!(
            read_request(&mut short, Duration::from_secs(1), Duration::from_secs(1)).await,
            Err(FcgiError::Truncated)
        );
        let (mut client, _server) = tokio::io::duplex(64);
        assert_eq!(
            read_request(&mut client, Duration::from_millis(50), Duration::from_secs(1)).await,
            Err(FcgiError::Timeout)
        );
    }

    #[test]
    fn truncated_input_is_an_error() {
        let bytes = apache_request(&[("A", "B")]);
        for cut in 0..bytes.len() {
            assert!(parse_request(&bytes[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn refuses_what_apache_never_sends() {
        // Wrong version, a responder, params before begin, another id, management id 0.
        let mut v = begin(1, ROLE_AUTHORIZER);
        v[0] = 2;
        assert_eq!(parse_request(&v), Err(FcgiError::Version(2)));
        assert_eq!(parse_request(&begin(1, 1)), Err(FcgiError::Role(1)));
        assert_eq!(
            parse_request(&record(PARAMS, 1, &[], 0)),
            Err(FcgiError::Unexpected(PARAMS))
        );
        let mut v = begin(1, ROLE_AUTHORIZER);
        v.extend(record(PARAMS, 2, &[], 0));
        assert_eq!(parse_request(&v), Err(FcgiError::RequestId { expected: 1, got: 2 }));
        assert!(parse_request(&begin(0, ROLE_AUTHORIZER)).is_err());
        let mut v = begin(1, ROLE_AUTHORIZER);
        v.extend(record(ABORT_REQUEST, 1, &[], 0));
        assert_eq!(parse_request(&v), Err(FcgiError::Aborted));
        assert!(parse_request(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").is_err());
    }

    #[test]
    fn bad_pairs_are_errors() {
        for body in [
            vec![5u8, 1, b'A'],                // name longer than the body
            vec![1u8, 9, b'A', b'x'],          // value longer than the body
            vec![0x80u8, 0, 0],                // a 4-byte length cut short
            vec![0xffu8, 0xff, 0xff, 0xff, 0], // a 2 GiB name
            vec![0u8, 0],                      // an empty name
            vec![1u8, 0, b'\n'],               // a control character in a name
        ] {
            let mut v = begin(1, ROLE_AUTHORIZER);
            v.extend(record(PARAMS, 1, &body, 0));
            v.extend(record(PARAMS, 1, &[], 0));
            assert!(parse_request(&v).is_err(), "{body:?}");
        }
    }

    #[test]
    fn oversized_requests_are_refused() {
        let mut v = begin(1, ROLE_AUTHORIZER);
        let chunk = vec![b'a'; 60_000];
        v.extend(record(PARAMS, 1, &chunk, 0));
        v.extend(record(PARAMS, 1, &chunk, 0));
        assert!(matches!(parse_request(&v), Err(FcgiError::TooLarge(_))));
        let mut v = begin(1, ROLE_AUTHORIZER);
        for _ in 0..MAX_RECORDS {
            v.extend(record(STDOUT, 1, b"x", 0));
        }
        assert!(parse_request(&v).is_err());
        // Ignored STDIN records still count.
        let mut v = begin(1, ROLE_AUTHORIZER);
        for _ in 0..MAX_RECORDS {
            v.extend(record(STDIN, 1, b"", 0));
        }
        v.extend(record(PARAMS, 1, &[], 0));
        assert_eq!(parse_request(&v), Err(FcgiError::TooLarge("too many records")));
        let mut v = begin(1, ROLE_AUTHORIZER);
        v.extend(record(STDIN, 1, b"ignored", 2));
        v.extend(record(PARAMS, 1, &[], 0));
        assert_eq!(parse_request(&v).map(|r| r.params.len()), Ok(0));
        let mut v = begin(1, ROLE_AUTHORIZER);
        let many: Vec<u8> = (0..MAX_PARAMS + 1).flat_map(|i| pair(&format!("N{i}"), "")).collect();
        v.extend(record(PARAMS, 1, &many, 0));
        v.extend(record(PARAMS, 1, &[], 0));
        assert_eq!(parse_request(&v), Err(FcgiError::TooLarge("too many parameters")));
    }

    #[test]
    fn response_framing() {
        let out = encode_response(7, b"Status: 200\r\n\r\n");
        assert_eq!(&out[..8], &[1, STDOUT, 0, 7, 0, 15, 0, 0]);
        assert_eq!(&out[8..23], b"Status: 200\r\n\r\n");
        assert_eq!(&out[23..31], &[1, STDOUT, 0, 7, 0, 0, 0, 0]);
        assert_eq!(&out[31..39], &[1, END_REQUEST, 0, 7, 0, 8, 0, 0]);
        assert_eq!(out.len(), 47);
        let big = encode_response(1, &vec![b'x'; 70_000]);
        assert_eq!(big.len(), 8 + 65535 + 8 + 4465 + 8 + 16);
    }

    /// Feeds `bytes` cut at `cuts` (taken modulo its length), as a socket may deliver it.
    fn in_pieces(bytes: &[u8], cuts: &[usize]) -> Result<Request, FcgiError> {
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
        cuts.sort_unstable();
        cuts.push(bytes.len());
        let mut p = Parser::new();
        let mut at = 0;
        for cut in cuts {
            if let Some(r) = p.feed(&bytes[at..cut])? {
                return Ok(r);
            }
            at = cut;
        }
        Err(FcgiError::Truncated)
    }

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
            let _ = parse_request(&bytes);
        }

        #[test]
        fn never_panics_on_arbitrary_params(body in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let mut v = begin(1, ROLE_AUTHORIZER);
            v.extend(record(PARAMS, 1, &body, 0));
            v.extend(record(PARAMS, 1, &[], 0));
            let _ = parse_request(&v);
        }

        #[test]
        fn pieces_agree_with_the_whole(
            bytes in proptest::collection::vec(any::<u8>(), 0..2048),
            cuts in proptest::collection::vec(any::<usize>(), 0..4),
        ) {
            prop_assert_eq!(in_pieces(&bytes, &cuts), parse_request(&bytes));
        }

        #[test]
        fn pieces_of_a_mutated_request_agree_with_the_whole(
            pairs in proptest::collection::hash_map("[A-Z_]{1,20}", "[ -~]{0,300}", 0..10),
            flip in any::<(usize, u8)>(),
            cuts in proptest::collection::vec(any::<usize>(), 0..4),
        ) {
            let list: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let mut bytes = apache_request(&list);
            let at = flip.0 % bytes.len();
            bytes[at] ^= flip.1;
            prop_assert_eq!(in_pieces(&bytes, &cuts), parse_request(&bytes));
        }

        #[test]
        fn round_trips_pairs(pairs in proptest::collection::hash_map("[A-Z_]{1,200}", "[ -~]{0,300}", 0..20)) {
            let list: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let req = parse_request(&apache_request(&list)).unwrap();
            prop_assert_eq!(req.params, pairs);
        }
    }
}
