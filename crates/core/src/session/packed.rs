//! A session as the in-memory table holds it: its user's name, display name, e-mail and
//! groups in one allocation, each after its length, instead of one `String` apiece (a
//! table of 100 000 sessions is then about half the size).

use super::{Level, Session};
use std::net::IpAddr;

/// What a [`Session`] knows, packed; `last_seen` lives beside it, in the table's entry.
#[derive(Debug)]
pub(super) struct Packed {
    /// The user's name, then the display name and e-mail (length + 1; 0 for none), then the
    /// number of groups and each group: every length a LEB128 number before its bytes.
    text: Box<[u8]>,
    pub(super) level: Level,
    pub(super) created: i64,
    pub(super) client_ip: Option<IpAddr>,
    pub(super) factor: Option<[u8; 16]>,
}

fn put_len(out: &mut Vec<u8>, mut n: usize) {
    loop {
        let low = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(low);
            return;
        }
        out.push(low | 0x80);
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_len(out, s.len());
    out.extend_from_slice(s.as_bytes());
}

fn put_opt(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        None => put_len(out, 0),
        Some(s) => {
            put_len(out, s.len() + 1);
            out.extend_from_slice(s.as_bytes());
        }
    }
}

/// Reads the packed fields in order.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn len(&mut self) -> usize {
        let mut n = 0usize;
        let mut shift = 0;
        while let Some((&b, rest)) = self.0.split_first() {
            self.0 = rest;
            n |= usize::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                break;
            }
            shift += 7;
        }
        n
    }

    fn bytes(&mut self, n: usize) -> &'a str {
        let (s, rest) = self.0.split_at(n.min(self.0.len()));
        self.0 = rest;
        // Written from `&str`s by `Packed::new`: always UTF-8.
        std::str::from_utf8(s).unwrap_or_default()
    }

    fn str(&mut self) -> &'a str {
        let n = self.len();
        self.bytes(n)
    }

    fn opt(&mut self) -> Option<&'a str> {
        match self.len() {
            0 => None,
            n => Some(self.bytes(n - 1)),
        }
    }
}

impl Packed {
    /// Packs `s` (its `last_seen` is the caller's to keep).
    pub(super) fn new(s: &Session) -> Packed {
        let mut text = Vec::with_capacity(
            s.user.len()
                + s.display_name.as_ref().map_or(0, String::len)
                + s.email.as_ref().map_or(0, String::len)
                + s.groups.iter().map(String::len).sum::<usize>()
                + 4
                + s.groups.len(),
        );
        put_str(&mut text, &s.user);
        put_opt(&mut text, s.display_name.as_deref());
        put_opt(&mut text, s.email.as_deref());
        put_len(&mut text, s.groups.len());
        for g in &s.groups {
            put_str(&mut text, g);
        }
        Packed {
            text: text.into_boxed_slice(),
            level: s.level,
            created: s.created,
            client_ip: s.client_ip,
            factor: s.factor,
        }
    }

    /// The user's login name.
    pub(super) fn user(&self) -> &str {
        Reader(&self.text).str()
    }

    /// The user's name, display name, e-mail and a reader positioned at the groups.
    fn names(&self) -> (&str, Option<&str>, Option<&str>, Reader<'_>) {
        let mut r = Reader(&self.text);
        let (user, display_name, email) = (r.str(), r.opt(), r.opt());
        (user, display_name, email, r)
    }

    /// Whether the session already holds these groups, display name and e-mail.
    pub(super) fn same_profile(&self, groups: &[String], display_name: Option<&str>, email: Option<&str>) -> bool {
        let (_, d, e, mut r) = self.names();
        if d != display_name || e != email || r.len() != groups.len() {
            return false;
        }
        groups.iter().all(|g| r.str() == g)
    }

    /// The session, last seen at `last_seen`.
    pub(super) fn unpack(&self, last_seen: i64) -> Session {
        let (user, display_name, email, mut r) = self.names();
        let n = r.len();
        Session {
            user: user.to_string(),
            groups: (0..n).map(|_| r.str().to_string()).collect(),
            display_name: display_name.map(str::to_string),
            email: email.map(str::to_string),
            level: self.level,
            created: self.created,
            last_seen,
            client_ip: self.client_ip,
            factor: self.factor,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn session(user: String, groups: Vec<String>, display_name: Option<String>, email: Option<String>) -> Session {
        Session {
            user,
            groups,
            display_name,
            email,
            level: Level::TwoFactor,
            created: 1_700_000_000,
            last_seen: 1_700_000_100,
            client_ip: Some(IpAddr::from([10, 0, 0, 1])),
            factor: Some([9; 16]),
        }
    }

    proptest! {
        #[test]
        fn a_packed_session_unpacks_as_it_was(
            user in ".{0,200}",
            groups in prop::collection::vec(".{0,300}", 0..20),
            display_name in prop::option::of(".{0,150}"),
            email in prop::option::of(".{0,130}"),
        ) {
            let s = session(user, groups, display_name, email);
            let p = Packed::new(&s);
            prop_assert_eq!(p.user(), s.user.as_str());
            prop_assert!(p.same_profile(&s.groups, s.display_name.as_deref(), s.email.as_deref()));
            prop_assert_eq!(p.unpack(s.last_seen), s);
        }
    }

    #[test]
    fn a_changed_profile_is_not_the_same() {
        let s = session(
            "alice".into(),
            vec!["staff".into(), "admins".into()],
            Some("Alice".into()),
            None,
        );
        let p = Packed::new(&s);
        assert!(p.same_profile(&s.groups, Some("Alice"), None));
        assert!(!p.same_profile(&["staff".to_string()], Some("Alice"), None));
        assert!(!p.same_profile(&["staff".to_string(), "admin".to_string()], Some("Alice"), None));
        assert!(!p.same_profile(&s.groups, None, None));
        assert!(!p.same_profile(&s.groups, Some("Alice"), Some("")));
        // An empty e-mail is not a missing one.
        let empty = session("bob".into(), vec![], None, Some(String::new()));
        assert_eq!(Packed::new(&empty).unpack(empty.last_seen), empty);
    }
}
