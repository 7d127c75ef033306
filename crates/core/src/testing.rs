//! Test support shared by the unit tests of this crate: an in-memory directory, and a
//! world of rules, sessions, regulation and users for the authorizer.

use crate::access::{AccessControl, Policy, Resource, RuleConfig};
use crate::authz::{Authorizer, BasicCache, Decision};
use crate::clock::FixedClock;
use crate::gate::Gate;
use crate::model::{FirstFactor, User};
use crate::regulation::{RegulationPolicy, Regulator};
use crate::session::{SessionPolicy, Sessions};
use crate::store::{Directory, StoreError};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Mutex;

/// An in-memory directory, enough to exercise the gate and the authorizer.
#[derive(Default)]
pub(crate) struct Memory(Mutex<BTreeMap<String, User>>);

impl Directory for Memory {
    fn backend(&self) -> &'static str {
        "memory"
    }
    fn user(&self, name: &str) -> Result<Option<User>, StoreError> {
        Ok(self.0.lock().unwrap().get(name).cloned())
    }
    fn users(&self) -> Result<Vec<User>, StoreError> {
        Ok(self.0.lock().unwrap().values().cloned().collect())
    }
    fn create(&self, user: &User) -> Result<(), StoreError> {
        let mut users = self.0.lock().unwrap();
        if users.contains_key(&user.name) {
            return Err(StoreError::Exists(user.name.clone()));
        }
        users.insert(user.name.clone(), user.clone());
        Ok(())
    }
    fn remove(&self, name: &str) -> Result<bool, StoreError> {
        Ok(self.0.lock().unwrap().remove(name).is_some())
    }
    fn update(&self, name: &str, change: &mut dyn FnMut(&mut User) -> bool) -> Result<bool, StoreError> {
        let mut users = self.0.lock().unwrap();
        let Some(stored) = users.get_mut(name) else {
            return Ok(false);
        };
        // A change that returns false is not kept, as in every real store.
        let mut copy = stored.clone();
        if change(&mut copy) {
            *stored = copy;
        }
        Ok(true)
    }
}

pub(crate) fn rule(path: &str, groups: &[&str], policy: Policy) -> RuleConfig {
    RuleConfig {
        domain: Vec::new(),
        path: vec![path.to_string()],
        path_ignore_case: false,
        methods: Vec::new(),
        networks: Vec::new(),
        users: Vec::new(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        policy,
    }
}

/// Everything an `Authorizer` borrows.
pub(crate) struct World {
    pub(crate) access: AccessControl,
    pub(crate) sessions: Sessions,
    pub(crate) regulator: Regulator,
    pub(crate) directory: Memory,
    pub(crate) cache: BasicCache,
    pub(crate) clock: FixedClock,
    pub(crate) linger: u64,
}

impl World {
    /// `/admin/` for group `admins` only, `/private/` denied to all, the rest two factors.
    pub(crate) fn new() -> World {
        let access = AccessControl::new(
            &[
                rule("^/admin/", &["admins"], Policy::TwoFactor),
                rule("^/admin/", &[], Policy::Deny),
                rule("^/private/", &[], Policy::Deny),
            ],
            Policy::TwoFactor,
        )
        .unwrap();
        let directory = Memory::default();
        for (name, groups, locked, failures) in [
            ("root", &["staff", "admins"][..], false, 0),
            ("alice", &["staff"][..], false, 0),
            ("locked", &["admins"][..], true, 0),
            ("failed", &["admins"][..], false, 5),
        ] {
            let mut u = User::new(name, FirstFactor::None);
            u.groups = groups.iter().map(|g| g.to_string()).collect();
            u.locked = locked;
            u.failures = failures;
            u.email = Some(format!("{name}@example.com"));
            directory.create(&u).unwrap();
        }
        World {
            access,
            sessions: Sessions::new(SessionPolicy::default(), None, 0).unwrap(),
            regulator: Regulator::new(RegulationPolicy::default()),
            directory,
            cache: BasicCache::default(),
            clock: FixedClock(1_700_000_000),
            linger: 0,
        }
    }

    pub(crate) fn authorizer(&self) -> Authorizer<'_> {
        Authorizer {
            access: &self.access,
            sessions: &self.sessions,
            regulator: &self.regulator,
            gate: Gate {
                directory: &self.directory,
                clock: &self.clock,
                policy: crate::gate::VerifyPolicy {
                    totp_window: 1,
                    hotp_look_ahead: 5,
                    motp_window: 3,
                    linger: self.linger,
                    max_failures: 5,
                },
                external: None,
            },
            basic_cache: &self.cache,
            pushes: None,
            passkeys: None,
            clock: &self.clock,
        }
    }

    pub(crate) fn authorize(&self, user: &str, path: &str) -> Decision {
        let resource = Resource {
            method: "GET",
            host: "app.example.com",
            path,
            client_ip: IpAddr::from([127, 0, 0, 1]),
        };
        self.authorizer().authorize_user(user, &resource).unwrap()
    }
}

/// Gives `alice` PIN `1234` and one TOTP token (RFC 6238's SHA-1 key); returns its codes by time.
pub(crate) fn alice_with_pin_and_token(w: &World) -> impl Fn(i64) -> String + use<> {
    use crate::model::{Step, Token, TokenKind};
    use portcullis_otp::{Algorithm, Hotp, Secret, totp_step};
    let secret = Secret::from_bytes(b"12345678901234567890".to_vec());
    w.directory
        .update("alice", &mut |u| {
            u.first_factor = FirstFactor::Pin(zeroize::Zeroizing::new("1234".into()));
            u.tokens = vec![Token::new(
                TokenKind::Oath,
                Step::Time(30),
                secret.clone(),
                Algorithm::Sha1,
                6,
            )];
            true
        })
        .unwrap();
    let g = Hotp::new(&secret, Algorithm::Sha1, 6);
    move |t| g.code(totp_step(t, 30)).to_string()
}
