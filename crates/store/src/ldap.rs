//! The LDAP first factor: a person is found with the service account (`user_filter`, the
//! typed name escaped per RFC 4515), their password is checked by binding as the entry
//! found, and their groups, name and mail are read from the server. Every operation is
//! bounded by `[ldap] timeout`; the servers of `url` are tried in turn.

use crate::bridge::Bridge;
use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, Scope, SearchEntry, ldap_escape};
use portcullis_core::StoreError;
use portcullis_core::config::LdapConfig;
use portcullis_core::factor::{PasswordSource, Profile};
use portcullis_core::model::{Step, Token, TokenKind};
use portcullis_core::password::PasswordError;
use portcullis_otp::{Algorithm, KeyUri, Secret};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use zeroize::Zeroizing;

/// How long a search result is reused: one login reads a person several times (name,
/// password, groups, fingerprint); a change on the server shows after this at most.
const REUSE: Duration = Duration::from_secs(1);

/// LDAP result codes that mean "not this password" (invalid credentials, and the
/// server-side refusals of a locked or expired account), answered like a wrong password.
const REFUSED: &[u32] = &[49, 50, 53, 19];

/// One person as the server holds them.
#[derive(Debug, Clone)]
struct Person {
    dn: String,
    name: String,
    display_name: Option<String>,
    email: Option<String>,
    member_of: Vec<String>,
    changed: String,
    /// The value of `[ldap] token_attribute`, if set and present.
    token: Option<Zeroizing<String>>,
}

/// What a search for a typed name found.
#[derive(Debug, Clone)]
enum Found {
    Nobody,
    One(Person),
    Several,
}

/// The `[ldap]` first-factor source.
pub struct LdapSource {
    config: LdapConfig,
    password_file: Option<PathBuf>,
    tls: Option<Arc<rustls::ClientConfig>>,
    bridge: Bridge,
    /// Idle connections bound as the service account.
    idle: Mutex<Vec<Ldap>>,
    /// The service account's password and the file's modification time it was read at.
    password: Mutex<(Option<SystemTime>, Zeroizing<String>)>,
    found: Recent<Found>,
    profiles: Recent<Option<Profile>>,
    /// How long the server takes to refuse a person's bind (microseconds, a running mean):
    /// it checks their stored hash, which a bind to a name it lacks skips.
    person_bind: AtomicU64,
}

/// Answers kept for [`REUSE`], by the name they answer for.
struct Recent<T>(Mutex<HashMap<String, (Instant, T)>>);

impl<T: Clone> Recent<T> {
    fn new() -> Self {
        Recent(Mutex::new(HashMap::new()))
    }

    fn get(&self, key: &str) -> Option<T> {
        let kept = self.0.lock().unwrap_or_else(|p| p.into_inner());
        kept.get(key)
            .filter(|(at, _)| at.elapsed() < REUSE)
            .map(|(_, v)| v.clone())
    }

    fn put(&self, key: &str, value: T) {
        let mut kept = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if kept.len() > 10_000 {
            kept.clear();
        }
        kept.insert(key.to_string(), (Instant::now(), value));
    }
}

impl std::fmt::Debug for LdapSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LdapSource")
            .field("url", &self.bridge.name)
            .finish_non_exhaustive()
    }
}

fn server_error(e: StoreError) -> PasswordError {
    match e {
        StoreError::Database { store, message } | StoreError::Unreachable { store, message } => PasswordError::Server {
            server: store,
            detail: message,
        },
        other => PasswordError::Server {
            server: "[ldap]".into(),
            detail: other.to_string(),
        },
    }
}

impl LdapSource {
    /// Checks `config` can be used (CA and password files readable) and keeps it; connects
    /// only when first asked, so a server down at start is an outage, not a crash.
    pub fn open(config: &LdapConfig, resolve: &dyn Fn(&Path) -> PathBuf) -> Result<Self, StoreError> {
        let name = config.urls().join(" ");
        let tls = match &config.ca_file {
            Some(ca) => Some(Arc::new(crate::tls::trusting(&resolve(ca), "[ldap] ca_file")?)),
            None => None,
        };
        let source = LdapSource {
            password_file: config.bind_password_file.as_deref().map(resolve),
            config: config.clone(),
            tls,
            // A whole call: each server tried in turn, then a bind and the operation, each
            // bounded by `timeout` on its own.
            bridge: Bridge::new(
                "LDAP",
                name,
                Duration::from_secs(config.timeout.saturating_mul(config.urls().len() as u64 + 2)),
            )?,
            idle: Mutex::new(Vec::new()),
            password: Mutex::new((None, Zeroizing::new(String::new()))),
            found: Recent::new(),
            profiles: Recent::new(),
            person_bind: AtomicU64::new(0),
        };
        source.service_password()?;
        Ok(source)
    }

    /// The service account's password, read again whenever its file changes.
    fn service_password(&self) -> Result<Zeroizing<String>, StoreError> {
        let Some(path) = &self.password_file else {
            return Ok(Zeroizing::new(String::new()));
        };
        let bad = |message: String| StoreError::File {
            path: path.clone(),
            message,
        };
        let modified = std::fs::metadata(path)
            .and_then(|m| m.modified())
            .map_err(|e| bad(format!("[ldap] bind_password_file: cannot read it: {e}")))?;
        let mut kept = self.password.lock().unwrap_or_else(|p| p.into_inner());
        if kept.0 != Some(modified) {
            let text = Zeroizing::new(
                std::fs::read_to_string(path)
                    .map_err(|e| bad(format!("[ldap] bind_password_file: cannot read it: {e}")))?,
            );
            let line = text.lines().next().unwrap_or("");
            if line.is_empty() {
                return Err(bad(
                    "[ldap] bind_password_file: its first line is empty; write the service account's password there"
                        .into(),
                ));
            }
            *kept = (Some(modified), Zeroizing::new(line.to_string()));
        }
        Ok(kept.1.clone())
    }

    /// `[ldap] timeout`: what any one operation may take.
    fn config_timeout(&self) -> Duration {
        Duration::from_secs(self.config.timeout)
    }

    fn settings(&self) -> LdapConnSettings {
        let mut s = LdapConnSettings::new()
            .set_conn_timeout(self.config_timeout())
            .set_starttls(self.config.start_tls);
        if let Some(tls) = &self.tls {
            s = s.set_config(tls.clone());
        }
        s
    }

    /// A new connection to the first server that takes it, not bound yet.
    async fn connect(&self) -> Result<Ldap, String> {
        let mut failures = Vec::new();
        for url in self.config.urls() {
            // Bounded here, TLS handshake included: a server that takes the connection and
            // never answers must leave time for the next one.
            let connecting = LdapConnAsync::with_settings(self.settings(), url);
            match tokio::time::timeout(self.config_timeout(), connecting).await {
                Ok(Ok((conn, ldap))) => {
                    ldap3::drive!(conn);
                    return Ok(ldap);
                }
                Ok(Err(e)) => failures.push(format!("{url}: {e}")),
                Err(_) => failures.push(format!("{url}: no answer within {} s", self.config.timeout)),
            }
        }
        Err(format!(
            "no server answered ({}); check that it is up, and its certificate against [ldap] ca_file",
            failures.join("; ")
        ))
    }

    /// Binds `ldap` as the service account (anonymous when `bind_dn` is empty).
    async fn bind_service(&self, ldap: &mut Ldap, password: &str) -> Result<(), String> {
        let r = ldap
            .with_timeout(self.config_timeout())
            .simple_bind(&self.config.bind_dn, password)
            .await
            .map_err(|e| e.to_string())?;
        if r.rc != 0 {
            return Err(format!(
                "the service account {:?} was refused (result {}: {}); check [ldap] bind_dn and bind_password_file",
                self.config.bind_dn, r.rc, r.text
            ));
        }
        Ok(())
    }

    /// An idle service connection, or a new one.
    async fn service(&self, password: &str) -> Result<Ldap, String> {
        let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        if let Some(mut ldap) = idle
            && !ldap.is_closed()
        {
            return Ok(ldap);
        }
        let mut ldap = self.connect().await?;
        self.bind_service(&mut ldap, password).await?;
        Ok(ldap)
    }

    fn give_back(&self, ldap: Ldap) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < self.config.pool_size {
            idle.push(ldap);
        }
    }

    /// Runs `op` on a service connection; a pooled connection that broke (the server
    /// restarted) is replaced once.
    fn with_service<T>(
        &self,
        op: impl for<'a> Fn(&'a mut Ldap) -> futures_util::future::BoxFuture<'a, Result<T, ldap3::LdapError>>,
    ) -> Result<T, PasswordError> {
        let password = self.service_password().map_err(server_error)?;
        self.bridge
            .run(
                async {
                    let mut last = String::new();
                    for _ in 0..2 {
                        let mut ldap = self.service(&password).await?;
                        match op(&mut ldap).await {
                            Ok(v) => {
                                self.give_back(ldap);
                                return Ok(v);
                            }
                            Err(e) => last = e.to_string(),
                        }
                    }
                    Err(last)
                },
                |e: String| self.bridge.fail(e),
            )
            .map_err(server_error)
    }

    /// The entries under `base` that `filter` finds, with `attrs`, as the service account.
    fn search(&self, base: &str, filter: &str, attrs: Vec<String>) -> Result<Vec<SearchEntry>, PasswordError> {
        let timeout = self.config_timeout();
        self.with_service(|ldap| {
            let (base, filter, attrs) = (base.to_string(), filter.to_string(), attrs.clone());
            Box::pin(async move {
                let (entries, _) = ldap
                    .with_timeout(timeout)
                    .search(&base, Scope::Subtree, &filter, attrs)
                    .await?
                    .success()?;
                Ok(entries.into_iter().map(SearchEntry::construct).collect::<Vec<_>>())
            })
        })
    }

    /// The person `typed` finds, read at most [`REUSE`] ago.
    fn find(&self, typed: &str) -> Result<Found, PasswordError> {
        if let Some(found) = self.found.get(typed) {
            return Ok(found);
        }
        let filter = self.config.user_filter().replace("{input}", &ldap_escape(typed));
        let c = &self.config;
        let attrs: Vec<String> = [
            c.username_attribute(),
            c.display_name_attribute(),
            c.mail_attribute(),
            c.member_of_attribute(),
            c.token_attribute.as_deref().unwrap_or(""),
            "modifyTimestamp",
        ]
        .into_iter()
        .filter(|a| !a.is_empty())
        .map(str::to_string)
        .collect();
        let entries = self.search(&c.base_dn, &filter, attrs)?;
        let first = |e: &SearchEntry, a: &str| e.attrs.get(a).and_then(|v| v.first()).cloned();
        let found = match entries.as_slice() {
            [] => Found::Nobody,
            [e] => match first(e, c.username_attribute()) {
                Some(name) => Found::One(Person {
                    dn: e.dn.clone(),
                    name,
                    display_name: first(e, c.display_name_attribute()),
                    email: first(e, c.mail_attribute()),
                    member_of: e.attrs.get(c.member_of_attribute()).cloned().unwrap_or_default(),
                    changed: first(e, "modifyTimestamp").unwrap_or_default(),
                    token: c
                        .token_attribute
                        .as_deref()
                        .and_then(|a| first(e, a))
                        .map(Zeroizing::new),
                }),
                None => {
                    tracing::warn!(dn = %e.dn, attribute = c.username_attribute(), "an LDAP entry without [ldap] username_attribute cannot sign in");
                    Found::Nobody
                }
            },
            many => {
                tracing::warn!(
                    count = many.len(),
                    "[ldap] user_filter matched several entries for one typed name; refused: make it match one entry per person"
                );
                Found::Several
            }
        };
        self.found.put(typed, found.clone());
        Ok(found)
    }

    /// The one person `user` (a canonical name) is, if the server's name for them is `user`.
    fn person(&self, user: &str) -> Result<Option<Person>, PasswordError> {
        Ok(match self.find(user)? {
            Found::One(p) if p.name.eq_ignore_ascii_case(user) => Some(p),
            _ => None,
        })
    }

    /// Binds as `dn` with `password`: whether the server accepted it.
    fn bind_as(&self, dn: &str, password: &str) -> Result<bool, PasswordError> {
        let started = Instant::now();
        let (rc, text) = self.bind_result(dn, password)?;
        if rc != 0 {
            let took = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
            // Lost updates between threads only blur the mean a little.
            let old = self.person_bind.load(Ordering::Relaxed);
            let new = if old == 0 {
                took
            } else {
                (old.saturating_mul(7).saturating_add(took)) / 8
            };
            self.person_bind.store(new, Ordering::Relaxed);
        }
        match rc {
            0 => Ok(true),
            rc if REFUSED.contains(&rc) => Ok(false),
            rc => Err(PasswordError::Server {
                server: self.bridge.name.clone(),
                detail: format!("binding as the person failed (result {rc}: {text})"),
            }),
        }
    }

    /// Binds as `dn` with `password` on a pooled connection: the server's result code and text.
    fn bind_result(&self, dn: &str, password: &str) -> Result<(u32, String), PasswordError> {
        let service = self.service_password().map_err(server_error)?;
        self.bridge
            .run(
                async {
                    let mut ldap = self.service(&service).await?;
                    let r = ldap
                        .with_timeout(self.config_timeout())
                        .simple_bind(dn, password)
                        .await
                        .map_err(|e| e.to_string())?;
                    // The connection is bound as the person now: back to the service
                    // account before anyone else uses it (or dropped).
                    if self.bind_service(&mut ldap, &service).await.is_ok() {
                        self.give_back(ldap);
                    }
                    Ok((r.rc, r.text))
                },
                |e: String| self.bridge.fail(e),
            )
            .map_err(server_error)
    }

    /// The names (and DNs) of `person`'s groups.
    fn groups(&self, person: &Person) -> Result<Vec<String>, PasswordError> {
        let mut names = Vec::new();
        for dn in &person.member_of {
            if let Some(cn) = first_rdn_value(dn) {
                names.push(cn);
            }
            names.push(dn.clone());
        }
        let filter = self.config.group_filter();
        if filter.is_empty() {
            return Ok(names);
        }
        let filter = filter
            .replace("{dn}", &ldap_escape(person.dn.as_str()))
            .replace("{username}", &ldap_escape(person.name.as_str()));
        let attr = self.config.group_name_attribute().to_string();
        let groups = self.search(self.config.group_base_dn(), &filter, vec![attr])?;
        for g in groups {
            if let Some(name) = g.attrs.get(self.config.group_name_attribute()).and_then(|v| v.first()) {
                names.push(name.clone());
            }
            names.push(g.dn);
        }
        let mut seen = std::collections::HashSet::new();
        names.retain(|n| seen.insert(n.clone()));
        Ok(names)
    }
}

/// The token an entry's token attribute holds: an otpauth:// URI, or a base32 TOTP key
/// (30 s, 6 digits, SHA-1, as authenticator apps assume).
fn token_of(value: &str, dn: &str) -> Result<Token, PasswordError> {
    let bad = |why: String| PasswordError::Server {
        server: dn.to_string(),
        detail: format!("[ldap] token_attribute: {why}; store an otpauth:// URI or a base32 key there"),
    };
    if value
        .trim_start()
        .get(..10)
        .is_some_and(|p| p.eq_ignore_ascii_case("otpauth://"))
    {
        let uri = KeyUri::parse(value).map_err(|e| bad(e.to_string()))?;
        return Ok(Token::from_key_uri(&uri));
    }
    let secret = Secret::from_base32(value).map_err(|e| bad(e.to_string()))?;
    Ok(Token::new(TokenKind::Oath, Step::Time(30), secret, Algorithm::Sha1, 6))
}

/// `admins` of `cn=admins,ou=groups,dc=example,dc=com`.
fn first_rdn_value(dn: &str) -> Option<String> {
    let rdn = dn.split(',').next()?;
    let (_, value) = rdn.split_once('=')?;
    Some(value.trim().to_string()).filter(|v| !v.is_empty())
}

impl PasswordSource for LdapSource {
    fn name(&self) -> &'static str {
        "ldap"
    }

    fn check(&self, user: &str, password: &str) -> Result<Option<bool>, PasswordError> {
        let Some(person) = self.person(user)? else {
            return Ok(None);
        };
        // An empty password would be an "unauthenticated bind", which servers accept.
        if password.is_empty() {
            return Ok(Some(false));
        }
        self.bind_as(&person.dn, password).map(Some)
    }

    fn spend(&self, typed: &str, password: &str) -> Result<(), PasswordError> {
        // What a refused login costs here: the search, the groups, then a bind the server
        // refuses.
        let _ = self.find(typed)?;
        let nobody = format!(
            "{}=portcullis-nobody,{}",
            self.config.username_attribute(),
            self.config.base_dn
        );
        let _ = self.groups(&Person {
            dn: nobody.clone(),
            name: "portcullis-nobody".into(),
            display_name: None,
            email: None,
            member_of: Vec::new(),
            changed: String::new(),
            token: None,
        })?;
        if !password.is_empty() {
            // Whatever the server answers for a name it lacks, only the time matters: as
            // long as a refused bind of a person takes.
            let started = Instant::now();
            self.bind_result(&nobody, password)?;
            let typical = Duration::from_micros(self.person_bind.load(Ordering::Relaxed));
            std::thread::sleep(typical.saturating_sub(started.elapsed()));
        }
        Ok(())
    }

    fn fingerprint(&self, user: &str) -> Result<Option<[u8; 16]>, PasswordError> {
        // The server keeps the password from the service account; any change to the entry
        // (a new password among them) moves its modifyTimestamp. The same on every node.
        Ok(self.person(user)?.map(|p| {
            let mut h = Sha256::new();
            h.update(b"portcullis ldap entry\0");
            h.update(p.dn.as_bytes());
            h.update(b"\0");
            h.update(p.changed.as_bytes());
            let mut out = [0u8; 16];
            out.copy_from_slice(&h.finalize()[..16]);
            out
        }))
    }

    fn canonical(&self, typed: &str) -> Result<Option<String>, PasswordError> {
        Ok(match self.find(typed)? {
            Found::One(p) => Some(p.name),
            _ => None,
        })
    }

    fn gives_profiles(&self) -> bool {
        true
    }

    fn may_enroll(&self, user: &str) -> Result<bool, PasswordError> {
        if !self.config.auto_enroll {
            return Ok(false);
        }
        let allowed = &self.config.auto_enroll_groups;
        Ok(self
            .profile(user)?
            .is_some_and(|p| p.groups.iter().any(|g| allowed.contains(g))))
    }

    fn profile(&self, user: &str) -> Result<Option<Profile>, PasswordError> {
        if let Some(profile) = self.profiles.get(user) {
            return Ok(profile);
        }
        let profile = match self.person(user)? {
            Some(person) => Some(Profile {
                groups: self.groups(&person)?,
                token: person.token.as_deref().map(|t| token_of(t, &person.dn)).transpose()?,
                display_name: person.display_name,
                email: person.email,
            }),
            None => None,
        };
        self.profiles.put(user, profile.clone());
        Ok(profile)
    }
}

#[cfg(test)]
mod tests {
    use super::{first_rdn_value, token_of};

    #[test]
    fn a_token_attribute_holds_a_uri_or_a_base32_key_and_anything_else_is_an_error() {
        let t = token_of(
            "otpauth://hotp/x:carol?secret=JBSWY3DPEHPK3PXP&digits=8&counter=5",
            "uid=carol",
        )
        .unwrap();
        assert_eq!(
            (t.step, t.digits, t.counter),
            (portcullis_core::model::Step::Event, 8, 5)
        );
        let t = token_of("jbsw y3dp ehpk 3pxp", "uid=carol").unwrap();
        assert_eq!((t.step, t.digits), (portcullis_core::model::Step::Time(30), 6));
        let e = token_of("not a key!", "uid=carol").unwrap_err().to_string();
        assert!(e.contains("uid=carol") && e.contains("token_attribute"), "{e}");
        assert!(!e.contains("not a key"), "the value stays out of messages: {e}");
    }

    #[test]
    fn a_groups_name_is_its_first_rdn_value() {
        assert_eq!(
            first_rdn_value("cn=admins,ou=groups,dc=example,dc=com").as_deref(),
            Some("admins")
        );
        assert_eq!(
            first_rdn_value("CN=Domain Admins,CN=Users,DC=ad").as_deref(),
            Some("Domain Admins")
        );
        assert_eq!(first_rdn_value("garbage"), None);
    }
}
