//! Brute-force regulation: fail2ban's maxretry/findtime/bantime inside the gateway, per
//! user name and per client address, in bounded memory.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;

/// Most keys (user names plus addresses) tracked at once; beyond it the stalest are dropped,
/// so a flood of addresses cannot exhaust memory.
pub const MAX_TRACKED: usize = 100_000;

/// When and for how long to ban.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegulationPolicy {
    /// Failures within `find_time` that trigger a ban (0 = regulation off); default 5.
    pub max_retries: u32,
    /// Seconds a failure keeps counting; default 10 minutes.
    pub find_time: u64,
    /// Seconds a ban lasts; default 15 minutes.
    pub ban_time: u64,
}

impl Default for RegulationPolicy {
    fn default() -> Self {
        RegulationPolicy {
            max_retries: 5,
            find_time: 600,
            ban_time: 900,
        }
    }
}

/// Which keys a failure banned.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Banned {
    /// The user name got banned by this failure.
    pub user: bool,
    /// The client address got banned by this failure.
    pub ip: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    User(String),
    Ip(IpAddr),
}

/// An IPv6 client controls at least a /64, so addresses are counted per /64; IPv4-mapped
/// addresses count as the IPv4 address they carry.
fn ip_key(ip: IpAddr) -> Key {
    match ip {
        IpAddr::V4(_) => Key::Ip(ip),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => Key::Ip(IpAddr::V4(v4)),
            None => {
                let mut seg = v6.segments();
                seg[4..].fill(0);
                Key::Ip(IpAddr::V6(seg.into()))
            }
        },
    }
}

#[derive(Debug, Default)]
struct Record {
    /// Times of the recent failures, oldest first, at most `max_retries` of them.
    failures: VecDeque<i64>,
    /// Banned while `now < banned_until`.
    banned_until: i64,
    /// Last change, for evicting the stalest records first.
    touched: i64,
}

/// Counts failures per user and per address and bans either once it has too many.
#[derive(Debug)]
pub struct Regulator {
    policy: RegulationPolicy,
    capacity: usize,
    records: Mutex<HashMap<Key, Record>>,
}

fn secs(s: u64) -> i64 {
    i64::try_from(s).unwrap_or(i64::MAX)
}

impl Regulator {
    /// A regulator with nothing recorded.
    pub fn new(policy: RegulationPolicy) -> Self {
        Self::with_capacity(policy, MAX_TRACKED)
    }

    /// A regulator tracking at most `capacity` keys (at least 1).
    pub fn with_capacity(policy: RegulationPolicy, capacity: usize) -> Self {
        Regulator {
            policy,
            capacity: capacity.max(1),
            records: Mutex::new(HashMap::new()),
        }
    }

    /// The rules in force.
    pub fn policy(&self) -> &RegulationPolicy {
        &self.policy
    }

    // Each change is one record's update; a panic elsewhere cannot corrupt the map.
    fn records(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Record>> {
        self.records.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn enabled(&self) -> bool {
        self.policy.max_retries > 0
    }

    /// True if this user or this client address is banned now (the caller answers exactly as for a wrong code).
    pub fn is_banned(&self, user: Option<&str>, ip: IpAddr, now: i64) -> bool {
        if !self.enabled() {
            return false;
        }
        let records = self.records();
        let banned = |k: &Key| records.get(k).is_some_and(|r| now < r.banned_until);
        banned(&ip_key(ip)) || user.is_some_and(|u| banned(&Key::User(u.to_string())))
    }

    /// Counts a failed attempt against both the user and the address; returns which got banned by it, if any.
    pub fn record_failure(&self, user: Option<&str>, ip: IpAddr, now: i64) -> Banned {
        if !self.enabled() {
            return Banned::default();
        }
        let mut records = self.records();
        let ip = self.fail(&mut records, ip_key(ip), now);
        let user = user.is_some_and(|u| self.fail(&mut records, Key::User(u.to_string()), now));
        Banned { user, ip }
    }

    /// Records one failure for `key`; true if it starts a ban.
    fn fail(&self, records: &mut HashMap<Key, Record>, key: Key, now: i64) -> bool {
        if !records.contains_key(&key) && records.len() >= self.capacity {
            self.evict(records, now);
        }
        let r = records.entry(key).or_default();
        r.touched = now;
        // Attempts during a ban are refused unseen, as fail2ban's firewall would; they
        // neither count nor extend it.
        if now < r.banned_until {
            return false;
        }
        let horizon = now.saturating_sub(secs(self.policy.find_time));
        while r.failures.front().is_some_and(|&t| t <= horizon) {
            r.failures.pop_front();
        }
        r.failures.push_back(now);
        if r.failures.len() >= self.policy.max_retries as usize {
            r.failures.clear();
            r.banned_until = now.saturating_add(secs(self.policy.ban_time));
            return true;
        }
        false
    }

    /// Makes room: first drops records that no longer matter, then, if still full, the
    /// stalest tenth, so a flood costs one sweep per many insertions rather than one each.
    fn evict(&self, records: &mut HashMap<Key, Record>, now: i64) {
        let horizon = now.saturating_sub(secs(self.policy.find_time));
        records.retain(|_, r| now < r.banned_until || r.failures.back().is_some_and(|&t| t > horizon));
        if records.len() < self.capacity {
            return;
        }
        // Running bans go last: dropping them would let a flood of addresses lift them.
        let rank = |r: &Record| (now < r.banned_until, r.touched);
        let mut ranked: Vec<((bool, i64), Key)> = records.iter().map(|(k, r)| (rank(r), k.clone())).collect();
        ranked.sort_unstable_by_key(|(rank, _)| *rank);
        let drop = (self.capacity / 10).max(1);
        for (_, key) in ranked.iter().take(drop) {
            records.remove(key);
        }
    }

    /// A success clears the user's failures (not the address's).
    pub fn record_success(&self, user: &str) {
        if !self.enabled() {
            return;
        }
        let mut records = self.records();
        if let Some(r) = records.get_mut(&Key::User(user.to_string())) {
            // A ban stands: a success during it should not happen, and must not lift it.
            r.failures.clear();
        }
    }

    /// How many users and addresses are banned now (for metrics).
    pub fn banned_count(&self, now: i64) -> usize {
        self.records().values().filter(|r| now < r.banned_until).count()
    }

    /// How many users and addresses are tracked (for metrics and tests).
    pub fn tracked(&self) -> usize {
        self.records().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_700_000_000;

    #[test]
    fn a_ban_ends_exactly_at_its_end_and_failures_during_it_do_not_extend_it() {
        let r = Regulator::new(RegulationPolicy {
            max_retries: 1,
            find_time: 600,
            ban_time: 900,
        });
        let a = ip("192.0.2.1");
        assert!(r.record_failure(None, a, T0).ip);
        assert!(!r.record_failure(None, a, T0 + 1).ip, "refused unseen during the ban");
        assert!(!r.record_failure(None, a, T0 + 899).ip);
        assert!(r.is_banned(None, a, T0 + 899));
        assert!(
            !r.is_banned(None, a, T0 + 900),
            "not extended by the failures during it"
        );
        assert!(
            r.record_failure(None, a, T0 + 900).ip,
            "after it, a failure counts again"
        );
    }

    #[test]
    fn a_full_table_evicts_only_to_admit_a_new_key() {
        let r = Regulator::with_capacity(RegulationPolicy::default(), 10);
        for i in 0..10u8 {
            r.record_failure(None, ip(&format!("192.0.2.{i}")), T0 + i64::from(i));
        }
        // Full, but this key is known: nothing is dropped, so 192.0.2.0 keeps its count.
        r.record_failure(None, ip("192.0.2.9"), T0 + 20);
        let first = ip("192.0.2.0");
        let banned = (0..4)
            .map(|k| r.record_failure(None, first, T0 + 30 + k).ip)
            .collect::<Vec<_>>();
        assert_eq!(
            banned,
            [false, false, false, true],
            "the fifth failure of 192.0.2.0 bans it"
        );
    }

    /// A record for tests: failures at `failures`, banned until `banned_until`, last touched at `touched`.
    fn record(failures: &[i64], banned_until: i64, touched: i64) -> Record {
        Record {
            failures: failures.iter().copied().collect(),
            banned_until,
            touched,
        }
    }

    #[test]
    fn eviction_first_drops_what_no_longer_matters() {
        // find_time 600: at T0 the horizon is T0 - 600.
        let r = Regulator::with_capacity(RegulationPolicy::default(), 6);
        let now = T0;
        let mut m = HashMap::new();
        let key = |i: u8| Key::Ip(ip(&format!("192.0.2.{i}")));
        m.insert(key(1), record(&[now - 601], 0, now - 601)); // old failure: goes
        m.insert(key(2), record(&[now - 600], 0, now - 600)); // exactly at the horizon: goes
        m.insert(key(3), record(&[now - 599], 0, now - 599)); // still counting: stays
        m.insert(key(4), record(&[], now, now - 900)); // ban ended just now: goes
        m.insert(key(5), record(&[], now + 1, now - 900)); // ban running: stays
        m.insert(key(6), record(&[now - 1], 0, now - 1)); // recent: stays
        r.evict(&mut m, now);
        let mut left: Vec<_> = m.keys().cloned().collect();
        left.sort_by_key(|k| format!("{k:?}"));
        assert_eq!(
            left,
            vec![key(3), key(5), key(6)],
            "below capacity after the sweep: nothing else goes"
        );
    }

    #[test]
    fn eviction_then_drops_the_stalest_tenth_keeping_running_bans() {
        let r = Regulator::with_capacity(RegulationPolicy::default(), 20);
        let now = T0;
        let mut m = HashMap::new();
        let key = |i: u8| Key::Ip(ip(&format!("192.0.2.{i}")));
        for i in 0..20u8 {
            // All still counting; 0 and 1 are the stalest but banned, so 2 (whose ban ends
            // just now, so it is not banned any more) and 3 go.
            let banned_until = match i {
                0 | 1 => now + 100,
                2 => now,
                _ => 0,
            };
            m.insert(key(i), record(&[now - 10], banned_until, now - 100 + i64::from(i)));
        }
        r.evict(&mut m, now);
        assert_eq!(m.len(), 18, "a tenth of the capacity goes");
        for i in [0, 1, 4, 19] {
            assert!(m.contains_key(&key(i)), "{i} stays");
        }
        for i in [2, 3] {
            assert!(!m.contains_key(&key(i)), "{i} is among the stalest unbanned");
        }
        assert_eq!(r.tracked(), 0, "evict works on the map it is given");
        r.record_failure(None, ip("192.0.2.1"), now);
        assert_eq!(r.tracked(), 1);
    }

    #[test]
    fn the_regulator_reports_the_policy_it_was_given() {
        let p = RegulationPolicy {
            max_retries: 3,
            find_time: 60,
            ban_time: 120,
        };
        assert_eq!(Regulator::new(p).policy(), &p);
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn policy() -> RegulationPolicy {
        RegulationPolicy {
            max_retries: 3,
            find_time: 600,
            ban_time: 900,
        }
    }

    #[test]
    fn defaults_match_fail2ban() {
        assert_eq!(
            RegulationPolicy::default(),
            RegulationPolicy {
                max_retries: 5,
                find_time: 600,
                ban_time: 900
            }
        );
    }

    #[test]
    fn bans_user_and_address_after_max_retries() {
        let r = Regulator::new(policy());
        let a = ip("192.0.2.1");
        assert_eq!(r.record_failure(Some("alice"), a, T0), Banned::default());
        assert_eq!(r.record_failure(Some("alice"), a, T0 + 1), Banned::default());
        assert!(!r.is_banned(Some("alice"), a, T0 + 1));
        assert_eq!(
            r.record_failure(Some("alice"), a, T0 + 2),
            Banned { user: true, ip: true }
        );
        assert!(r.is_banned(Some("alice"), a, T0 + 2));
        assert!(
            r.is_banned(Some("alice"), ip("198.51.100.1"), T0 + 2),
            "the user from anywhere"
        );
        assert!(r.is_banned(Some("bob"), a, T0 + 2), "anyone from that address");
        assert!(r.is_banned(None, a, T0 + 2));
        assert!(!r.is_banned(Some("bob"), ip("198.51.100.1"), T0 + 2));
        assert_eq!(r.banned_count(T0 + 2), 2);
    }

    #[test]
    fn a_ban_lasts_ban_time() {
        let r = Regulator::new(policy());
        let a = ip("192.0.2.1");
        for t in 0..3 {
            r.record_failure(Some("alice"), a, T0 + t);
        }
        assert!(r.is_banned(Some("alice"), a, T0 + 2 + 899));
        // Failures during the ban do not extend it.
        assert_eq!(r.record_failure(Some("alice"), a, T0 + 500), Banned::default());
        assert!(!r.is_banned(Some("alice"), a, T0 + 2 + 900));
        assert_eq!(r.banned_count(T0 + 2 + 900), 0);
        // After it, counting starts afresh.
        assert_eq!(r.record_failure(Some("alice"), a, T0 + 1000), Banned::default());
    }

    #[test]
    fn failures_older_than_find_time_do_not_count() {
        let r = Regulator::new(policy());
        let a = ip("192.0.2.1");
        r.record_failure(Some("alice"), a, T0);
        r.record_failure(Some("alice"), a, T0 + 300);
        // The first has aged out at T0 + 600.
        assert_eq!(r.record_failure(Some("alice"), a, T0 + 600), Banned::default());
        assert!(!r.is_banned(Some("alice"), a, T0 + 600));
        assert_eq!(
            r.record_failure(Some("alice"), a, T0 + 601),
            Banned { user: true, ip: true }
        );
    }

    #[test]
    fn success_clears_the_user_not_the_address() {
        let r = Regulator::new(policy());
        let a = ip("192.0.2.1");
        r.record_failure(Some("alice"), a, T0);
        r.record_failure(Some("alice"), a, T0 + 1);
        r.record_success("alice");
        assert_eq!(
            r.record_failure(Some("alice"), a, T0 + 2),
            Banned { user: false, ip: true }
        );
        assert!(!r.is_banned(Some("alice"), ip("198.51.100.1"), T0 + 2));
    }

    #[test]
    fn failures_without_a_user_count_against_the_address() {
        let r = Regulator::new(policy());
        let a = ip("192.0.2.1");
        for (i, u) in [Some("a"), None, Some("c")].into_iter().enumerate() {
            let b = r.record_failure(u, a, T0 + i as i64);
            assert_eq!(b.ip, i == 2);
            assert!(!b.user);
        }
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_v4_as_v4() {
        let r = Regulator::new(policy());
        r.record_failure(None, ip("2001:db8:1:2::1"), T0);
        r.record_failure(None, ip("2001:db8:1:2::2"), T0);
        r.record_failure(None, ip("2001:db8:1:2:ffff::3"), T0);
        assert!(r.is_banned(None, ip("2001:db8:1:2::99"), T0));
        assert!(!r.is_banned(None, ip("2001:db8:1:3::1"), T0));
        for _ in 0..3 {
            r.record_failure(None, ip("::ffff:192.0.2.9"), T0);
        }
        assert!(r.is_banned(None, ip("192.0.2.9"), T0));
    }

    #[test]
    fn zero_max_retries_disables() {
        let r = Regulator::new(RegulationPolicy {
            max_retries: 0,
            ..policy()
        });
        let a = ip("192.0.2.1");
        for t in 0..100 {
            assert_eq!(r.record_failure(Some("alice"), a, T0 + t), Banned::default());
        }
        assert!(!r.is_banned(Some("alice"), a, T0 + 100));
        assert_eq!(r.tracked(), 0);
    }

    #[test]
    fn memory_is_bounded_and_the_stalest_go_first() {
        let r = Regulator::with_capacity(policy(), 100);
        // A running ban is kept over newer counts.
        for t in 0..3 {
            r.record_failure(None, ip("203.0.113.1"), T0 + t);
        }
        for i in 0..1000u32 {
            let a = IpAddr::V4((0x0a00_0000 + i).into());
            r.record_failure(None, a, T0 + 10 + i64::from(i / 10));
            assert!(r.tracked() <= 100);
        }
        assert!(r.is_banned(None, ip("203.0.113.1"), T0 + 200));
        // The most recent addresses are still counted.
        let last = IpAddr::V4((0x0a00_0000 + 999u32).into());
        r.record_failure(None, last, T0 + 200);
        assert_eq!(r.record_failure(None, last, T0 + 201), Banned { user: false, ip: true });
    }
}
