//! The Auth API v2 client: signed form requests over verified TLS, the clock offset from
//! `/ping`, bounded back-off on 429, strict parsing of every answer (anything unexpected
//! refuses), and the core's [`PushService`] on top.

use crate::sign;
use portcullis_core::clock::Clock;
use portcullis_core::push::{Preauth, PushError, PushService, PushStatus};
use serde_json::Value;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;
use zeroize::Zeroizing;

/// Why the client could not be set up; each names what to change.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SetupError {
    /// The secret key file cannot be read or is empty.
    #[error("[duo] secret_key_file {path}: {reason}")]
    SecretKey {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// A CA file that cannot be used.
    #[error("[duo] ca_file {path}: {reason}")]
    Ca {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
}

/// How the client talks to Duo.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `api-XXXXXXXX.duosecurity.com` (or `HOST:PORT`).
    pub api_host: String,
    /// The integration key.
    pub ikey: String,
    /// The Duo name of a portcullis user: `{user}` replaced.
    pub username: String,
    /// Send the service's host and the client's address with a push.
    pub push_info: bool,
    /// What the push shows as the service (`pushinfo` `host=`).
    pub service_name: String,
    /// Bound of one call (a long poll gets what it asks for on top).
    pub call_timeout: Duration,
    /// Back-off rounds on 429 (each 1 s, 2 s, 4 s … up to 32 s, plus up to 1 s of jitter).
    pub retries: u32,
}

/// A Duo Auth API v2 client.
pub struct DuoClient {
    settings: Settings,
    skey: Zeroizing<Vec<u8>>,
    agent: ureq::Agent,
    clock: Arc<dyn Clock>,
    /// Duo's clock minus ours, from the last `/ping`: dates are signed in Duo's time.
    offset: AtomicI64,
}

impl std::fmt::Debug for DuoClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "DuoClient({}, {}, secret key redacted)",
            self.settings.api_host, self.settings.ikey
        )
    }
}

/// What one call got back.
enum Reply {
    /// `stat: OK`: the `response` member.
    Ok(Value),
    /// `stat: FAIL` with a 4xx or a 200: Duo refuses (bad parameters, bad signature).
    Fail(String),
}

/// The system's roots, plus `extra` (a PEM file) when given.
fn roots(extra: Option<&std::path::Path>) -> Result<Vec<ureq::tls::Certificate<'static>>, SetupError> {
    let mut certs: Vec<ureq::tls::Certificate<'static>> = rustls_native_certs::load_native_certs()
        .certs
        .iter()
        .map(|c| ureq::tls::Certificate::from_der(c.as_ref()).to_owned())
        .collect();
    if let Some(path) = extra {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        let bad = |reason: String| SetupError::Ca {
            path: path.display().to_string(),
            reason,
        };
        let before = certs.len();
        for cert in CertificateDer::pem_file_iter(path).map_err(|e| bad(format!("cannot read it as PEM: {e}")))? {
            let cert = cert.map_err(|e| bad(format!("a certificate in it is broken: {e}")))?;
            certs.push(ureq::tls::Certificate::from_der(cert.as_ref()).to_owned());
        }
        if certs.len() == before {
            return Err(bad("it holds no certificate".into()));
        }
    }
    Ok(certs)
}

/// Reads the secret key: the first line of `path`.
pub fn read_secret_key(path: &std::path::Path) -> Result<Zeroizing<Vec<u8>>, SetupError> {
    let bad = |reason: String| SetupError::SecretKey {
        path: path.display().to_string(),
        reason,
    };
    let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| bad(format!("cannot read it: {e}")))?);
    let key = text.lines().next().unwrap_or("").trim();
    if key.is_empty() {
        return Err(bad(
            "it is empty; put the Auth API application's secret key on its first line".into(),
        ));
    }
    Ok(Zeroizing::new(key.as_bytes().to_vec()))
}

impl DuoClient {
    /// A client with `settings`, the secret key `skey`, trusting the system's roots and
    /// `ca_file`.
    pub fn new(
        settings: Settings,
        skey: Zeroizing<Vec<u8>>,
        ca_file: Option<&std::path::Path>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, SetupError> {
        let tls = ureq::tls::TlsConfig::builder()
            .provider(ureq::tls::TlsProvider::Rustls)
            .root_certs(ureq::tls::RootCerts::Specific(Arc::new(roots(ca_file)?)))
            .unversioned_rustls_crypto_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .build();
        let agent = ureq::Agent::config_builder()
            .tls_config(tls)
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_connect(Some(Duration::from_secs(5)))
            .timeout_global(Some(settings.call_timeout))
            .user_agent("portcullis-duo")
            .build()
            .new_agent();
        Ok(DuoClient {
            settings,
            skey,
            agent,
            clock,
            offset: AtomicI64::new(0),
        })
    }

    fn duo_name(&self, user: &str) -> String {
        self.settings.username.replace("{user}", user)
    }

    fn url(&self, path: &str) -> String {
        format!("https://{}{path}", self.settings.api_host)
    }

    /// `/auth/v2/ping` (unsigned): Duo's time, kept as the offset for signing; returns it.
    pub fn ping(&self) -> Result<i64, PushError> {
        let reply = self.call("GET", "/auth/v2/ping", &[], false, Duration::ZERO)?;
        let time = match reply {
            Reply::Ok(r) => r.get("time").and_then(Value::as_i64),
            Reply::Fail(m) => return Err(PushError::Refused(m)),
        }
        .ok_or_else(|| PushError::Refused("ping: no time in the answer".into()))?;
        self.offset.store(time - self.clock.now(), Ordering::Relaxed);
        Ok(time)
    }

    /// `/auth/v2/check`: the keys are right (a signed call Duo accepts); Duo's time.
    pub fn check(&self) -> Result<i64, PushError> {
        match self.call("GET", "/auth/v2/check", &[], true, Duration::ZERO)? {
            Reply::Ok(r) => r
                .get("time")
                .and_then(Value::as_i64)
                .ok_or_else(|| PushError::Refused("check: no time in the answer".into())),
            Reply::Fail(m) => Err(PushError::Refused(m)),
        }
    }

    /// Duo's clock minus ours, as of the last ping.
    pub fn offset(&self) -> i64 {
        self.offset.load(Ordering::Relaxed)
    }

    /// One call, retried on 429 with bounded exponential back-off and jitter.
    fn call(
        &self,
        method: &str,
        path: &str,
        params: &[(&str, &str)],
        signed: bool,
        wait: Duration,
    ) -> Result<Reply, PushError> {
        let mut attempt = 0u32;
        loop {
            match self.call_once(method, path, params, signed, wait)? {
                Once::Reply(r) => return Ok(r),
                Once::Slow(after) if attempt < self.settings.retries => {
                    let backoff = Duration::from_secs(1u64 << attempt.min(5));
                    let jitter = Duration::from_millis(u64::from(portcullis_core::random::bytes(2)[0]) * 4);
                    std::thread::sleep(after.unwrap_or(backoff).min(Duration::from_secs(32)) + jitter);
                    attempt += 1;
                }
                Once::Slow(_) => {
                    return Err(PushError::Unreachable(format!(
                        "{path}: rate limited by Duo (429) after {attempt} retries"
                    )));
                }
            }
        }
    }

    fn call_once(
        &self,
        method: &str,
        path: &str,
        params: &[(&str, &str)],
        signed: bool,
        wait: Duration,
    ) -> Result<Once, PushError> {
        let date = sign::rfc2822(self.clock.now() + self.offset());
        let host = sign_host(&self.settings.api_host);
        let body = sign::canonical_params(params);
        let url = if method == "GET" && !body.is_empty() {
            format!("{}?{body}", self.url(path))
        } else {
            self.url(path)
        };
        let unreachable = |e: ureq::Error| PushError::Unreachable(format!("{path}: {e}"));
        let timeout = Some(self.settings.call_timeout + wait);
        let response = if method == "GET" {
            let mut r = self.agent.get(&url).header("Date", &date);
            if signed {
                let canon = sign::canonical(&date, method, &host, path, params);
                r = r.header(
                    "Authorization",
                    &sign::authorization(&self.settings.ikey, &self.skey, &canon),
                );
            }
            r.config().timeout_global(timeout).build().call().map_err(unreachable)?
        } else {
            let canon = sign::canonical(&date, method, &host, path, params);
            self.agent
                .post(&url)
                .header("Date", &date)
                .header(
                    "Authorization",
                    &sign::authorization(&self.settings.ikey, &self.skey, &canon),
                )
                .header("Content-Type", "application/x-www-form-urlencoded")
                .config()
                .timeout_global(timeout)
                .build()
                .send(body.as_bytes())
                .map_err(unreachable)?
        };
        let status = response.status().as_u16();
        if status == 429 {
            let after = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            return Ok(Once::Slow(after));
        }
        if status >= 500 {
            return Err(PushError::Unreachable(format!("{path}: Duo answered HTTP {status}")));
        }
        let text = response
            .into_body()
            .with_config()
            .limit(64 * 1024)
            .read_to_string()
            .map_err(unreachable)?;
        let json: Value = serde_json::from_str(&text)
            .map_err(|e| PushError::Refused(format!("{path}: HTTP {status}, an answer that is not JSON: {e}")))?;
        match json.get("stat").and_then(Value::as_str) {
            Some("OK") if status == 200 => json
                .get("response")
                .cloned()
                .map(|r| Once::Reply(Reply::Ok(r)))
                .ok_or_else(|| PushError::Refused(format!("{path}: stat OK without a response"))),
            Some("FAIL") => {
                let code = json.get("code").and_then(Value::as_i64).unwrap_or(0);
                let message = json.get("message").and_then(Value::as_str).unwrap_or("(no message)");
                let detail = json
                    .get("message_detail")
                    .and_then(Value::as_str)
                    .map(|d| format!(" ({d})"))
                    .unwrap_or_default();
                Ok(Once::Reply(Reply::Fail(format!(
                    "{path}: Duo refused (HTTP {status}, code {code}): {message}{detail}"
                ))))
            }
            _ => Err(PushError::Refused(format!(
                "{path}: HTTP {status}, an answer without a known stat"
            ))),
        }
    }

    fn pushinfo(&self, client_ip: Option<IpAddr>) -> String {
        let mut pairs = vec![("host", self.settings.service_name.clone())];
        if let Some(ip) = client_ip {
            pairs.push(("client", ip.to_string()));
        }
        pairs
            .iter()
            .map(|(k, v)| format!("{}={}", sign::encode(k), sign::encode(v)))
            .collect::<Vec<_>>()
            .join("&")
    }

    fn ok(reply: Reply) -> Result<Value, PushError> {
        match reply {
            Reply::Ok(v) => Ok(v),
            Reply::Fail(m) => Err(PushError::Refused(m)),
        }
    }
}

enum Once {
    Reply(Reply),
    /// 429, with the `Retry-After` seconds when given.
    Slow(Option<Duration>),
}

/// The host as signed: the API host name in lower case, without a port (Duo's is 443;
/// a stand-in's port is not part of the name).
fn sign_host(api_host: &str) -> String {
    let host = match api_host.rsplit_once(':') {
        Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) && !h.ends_with(':') => h,
        _ => api_host,
    };
    host.to_ascii_lowercase()
}

fn text<'v>(v: &'v Value, key: &str) -> Option<&'v str> {
    v.get(key).and_then(Value::as_str)
}

impl PushService for DuoClient {
    fn name(&self) -> &'static str {
        "duo"
    }

    fn preauth(&self, user: &str, client_ip: Option<IpAddr>) -> Result<Preauth, PushError> {
        // Duo's clock for the signed date, as duo_unix does before every login; a failed
        // ping is an unreachable Duo (the failmode applies).
        if let Err(e) = self.ping() {
            return Err(match e {
                PushError::Refused(m) => PushError::Unreachable(m),
                other => other,
            });
        }
        let name = self.duo_name(user);
        let ip = client_ip.map(|i| i.to_string());
        let mut params = vec![("username", name.as_str())];
        if let Some(ip) = &ip {
            params.push(("ipaddr", ip));
        }
        let r = Self::ok(self.call("POST", "/auth/v2/preauth", &params, true, Duration::ZERO)?)?;
        let msg = text(&r, "status_msg").unwrap_or("").to_string();
        match text(&r, "result") {
            Some("auth") => {
                let devices = r.get("devices").and_then(Value::as_array).cloned().unwrap_or_default();
                let pushable = devices.iter().find(|d| {
                    d.get("capabilities")
                        .and_then(Value::as_array)
                        .is_some_and(|c| c.iter().any(|c| c.as_str() == Some("push")))
                });
                match pushable.and_then(|d| text(d, "device").map(|id| (id, d))) {
                    Some((id, d)) => Ok(Preauth::Push {
                        device: id.to_string(),
                        name: text(d, "display_name")
                            .or_else(|| text(d, "name"))
                            .unwrap_or(id)
                            .to_string(),
                    }),
                    None => Err(PushError::Refused(
                        "preauth: no device of this user takes a push".into(),
                    )),
                }
            }
            Some("allow") => Ok(Preauth::Allow),
            Some("deny") => Ok(Preauth::Deny(msg)),
            Some("enroll") => Ok(Preauth::Enroll(text(&r, "enroll_portal_url").unwrap_or("").to_string())),
            other => Err(PushError::Refused(format!("preauth: unknown result {other:?}"))),
        }
    }

    fn push(&self, user: &str, device: &str, client_ip: Option<IpAddr>) -> Result<String, PushError> {
        let name = self.duo_name(user);
        let ip = client_ip.map(|i| i.to_string());
        let info = self.pushinfo(client_ip);
        let mut params = vec![
            ("username", name.as_str()),
            ("factor", "push"),
            ("device", device),
            ("async", "1"),
        ];
        if let Some(ip) = &ip {
            params.push(("ipaddr", ip));
        }
        if self.settings.push_info {
            params.push(("pushinfo", &info));
        }
        let r = Self::ok(self.call("POST", "/auth/v2/auth", &params, true, Duration::ZERO)?)?;
        text(&r, "txid")
            .filter(|t| !t.is_empty())
            .map(str::to_string)
            .ok_or_else(|| PushError::Refused("auth: no txid in the answer".into()))
    }

    fn status(&self, txid: &str, wait: Duration) -> Result<PushStatus, PushError> {
        // Duo holds the request until something changes (a long poll): give it `wait`.
        let reply = match self.call("GET", "/auth/v2/auth_status", &[("txid", txid)], true, wait) {
            // Our wait ran out before Duo's did: still waiting, as far as we know.
            Err(PushError::Unreachable(m)) if m.contains("timeout") || m.contains("Timeout") => {
                return Ok(PushStatus::Waiting);
            }
            other => other?,
        };
        let r = Self::ok(reply)?;
        Ok(match text(&r, "result") {
            Some("waiting") => PushStatus::Waiting,
            Some("allow") => PushStatus::Allowed,
            Some("deny") => PushStatus::Denied(text(&r, "status_msg").unwrap_or("denied").to_string()),
            // Strict: anything else is a refusal.
            other => PushStatus::Denied(format!("auth_status: unknown result {other:?}")),
        })
    }

    fn passcode(&self, user: &str, code: &str, client_ip: Option<IpAddr>) -> Result<bool, PushError> {
        let name = self.duo_name(user);
        let ip = client_ip.map(|i| i.to_string());
        let mut params = vec![("username", name.as_str()), ("factor", "passcode"), ("passcode", code)];
        if let Some(ip) = &ip {
            params.push(("ipaddr", ip));
        }
        let r = Self::ok(self.call("POST", "/auth/v2/auth", &params, true, Duration::ZERO)?)?;
        Ok(text(&r, "result") == Some("allow"))
    }
}
