//! Brute-force regulation: fail2ban's maxretry/findtime/bantime inside the gateway, per
//! user name and per client address. The counts live in a [`RegulationStore`]: memory (one
//! process, bounded) or a table every process on one store shares (SQLite), so a ban earned
//! over SSH holds on the web and the other way round.

use crate::store::StoreError;
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Most keys (user names plus addresses) tracked at once in memory; beyond it the stalest
/// are dropped, so a flood of addresses cannot exhaust memory.
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

/// The key of a user name.
fn user_key(user: &str) -> String {
    format!("user:{user}")
}

/// The key of a client address. An IPv6 client controls at least a /64, so addresses are
/// counted per /64; IPv4-mapped addresses count as the IPv4 address they carry.
fn ip_key(ip: IpAddr) -> String {
    let ip = match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut seg = v6.segments();
                seg[4..].fill(0);
                IpAddr::V6(seg.into())
            }
        },
    };
    format!("ip:{ip}")
}

/// One key's recent failures and ban, as every regulation store keeps it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Record {
    /// Times of the recent failures, oldest first, at most `max_retries` of them.
    pub failures: VecDeque<i64>,
    /// Banned while `now < banned_until`.
    pub banned_until: i64,
    /// Last change, for evicting the stalest records first.
    pub touched: i64,
}

fn secs(s: u64) -> i64 {
    i64::try_from(s).unwrap_or(i64::MAX)
}

impl Record {
    /// Counts one failure at `now`; true if it starts a ban. Attempts during a ban are
    /// refused unseen, as fail2ban's firewall would: they neither count nor extend it.
    pub fn fail(&mut self, now: i64, policy: &RegulationPolicy) -> bool {
        self.touched = now;
        if now < self.banned_until {
            return false;
        }
        let horizon = now.saturating_sub(secs(policy.find_time));
        while self.failures.front().is_some_and(|&t| t <= horizon) {
            self.failures.pop_front();
        }
        self.failures.push_back(now);
        if self.failures.len() >= policy.max_retries as usize {
            self.failures.clear();
            self.banned_until = now.saturating_add(secs(policy.ban_time));
            return true;
        }
        false
    }

    /// Whether the record still matters at `now`: a ban running or a failure still counting.
    pub fn matters(&self, now: i64, policy: &RegulationPolicy) -> bool {
        let horizon = now.saturating_sub(secs(policy.find_time));
        now < self.banned_until || self.failures.back().is_some_and(|&t| t > horizon)
    }
}

/// Where failure counts and bans are kept. Every change is one atomic step, across threads
/// and (for a shared store) across processes.
pub trait RegulationStore: Send + Sync {
    /// Whether any of `keys` is banned at `now`.
    fn banned(&self, keys: &[String], now: i64) -> Result<bool, StoreError>;
    /// Counts one failure at `now` against each key; for each, whether it started a ban.
    fn fail(&self, keys: &[String], now: i64, policy: &RegulationPolicy) -> Result<Vec<bool>, StoreError>;
    /// Forgets a key's failures (a ban stands).
    fn clear_failures(&self, key: &str) -> Result<(), StoreError>;
    /// How many keys are banned at `now`.
    fn banned_count(&self, now: i64) -> Result<usize, StoreError>;
    /// How many keys are kept.
    fn tracked(&self) -> Result<usize, StoreError>;
    /// Drops the records that no longer matter at `now`; returns how many.
    fn purge(&self, now: i64, policy: &RegulationPolicy) -> Result<usize, StoreError>;
}

/// Counts in this process's memory, at most `capacity` keys.
#[derive(Debug)]
pub struct MemoryRegulation {
    capacity: usize,
    records: Mutex<HashMap<String, Record>>,
}

impl Default for MemoryRegulation {
    fn default() -> Self {
        Self::with_capacity(MAX_TRACKED)
    }
}

impl MemoryRegulation {
    /// A store of at most `capacity` keys (at least 1).
    pub fn with_capacity(capacity: usize) -> Self {
        MemoryRegulation {
            capacity: capacity.max(1),
            records: Mutex::new(HashMap::new()),
        }
    }

    // Each change is one record's update; a panic elsewhere cannot corrupt the map.
    fn records(&self) -> std::sync::MutexGuard<'_, HashMap<String, Record>> {
        self.records.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes room: first drops records that no longer matter, then, if still full, the
    /// stalest tenth, so a flood costs one sweep per many insertions rather than one each.
    fn evict(&self, records: &mut HashMap<String, Record>, now: i64, policy: &RegulationPolicy) {
        records.retain(|_, r| r.matters(now, policy));
        if records.len() < self.capacity {
            return;
        }
        // Running bans go last: dropping them would let a flood of addresses lift them.
        let rank = |r: &Record| (now < r.banned_until, r.touched);
        let mut ranked: Vec<((bool, i64), String)> = records.iter().map(|(k, r)| (rank(r), k.clone())).collect();
        ranked.sort_unstable_by_key(|(rank, _)| *rank);
        let drop = (self.capacity / 10).max(1);
        for (_, key) in ranked.iter().take(drop) {
            records.remove(key);
        }
    }
}

impl RegulationStore for MemoryRegulation {
    fn banned(&self, keys: &[String], now: i64) -> Result<bool, StoreError> {
        let records = self.records();
        Ok(keys
            .iter()
            .any(|k| records.get(k).is_some_and(|r| now < r.banned_until)))
    }

    fn fail(&self, keys: &[String], now: i64, policy: &RegulationPolicy) -> Result<Vec<bool>, StoreError> {
        let mut records = self.records();
        Ok(keys
            .iter()
            .map(|k| {
                if !records.contains_key(k) && records.len() >= self.capacity {
                    self.evict(&mut records, now, policy);
                }
                records.entry(k.clone()).or_default().fail(now, policy)
            })
            .collect())
    }

    fn clear_failures(&self, key: &str) -> Result<(), StoreError> {
        if let Some(r) = self.records().get_mut(key) {
            r.failures.clear();
        }
        Ok(())
    }

    fn banned_count(&self, now: i64) -> Result<usize, StoreError> {
        Ok(self.records().values().filter(|r| now < r.banned_until).count())
    }

    fn tracked(&self) -> Result<usize, StoreError> {
        Ok(self.records().len())
    }

    fn purge(&self, now: i64, policy: &RegulationPolicy) -> Result<usize, StoreError> {
        let mut records = self.records();
        let before = records.len();
        records.retain(|_, r| r.matters(now, policy));
        Ok(before - records.len())
    }
}

/// Counts failures per user and per address and bans either once it has too many. A store
/// that fails is a refusal: every check reads as banned until it answers again.
pub struct Regulator {
    policy: RegulationPolicy,
    store: Arc<dyn RegulationStore>,
}

impl std::fmt::Debug for Regulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Regulator")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl Regulator {
    /// A regulator in memory with nothing recorded.
    pub fn new(policy: RegulationPolicy) -> Self {
        Self::with_capacity(policy, MAX_TRACKED)
    }

    /// A regulator that bans nobody (pam_oath's drop-in, the CLI's `verify`).
    pub fn off() -> Self {
        Self::new(RegulationPolicy {
            max_retries: 0,
            ..RegulationPolicy::default()
        })
    }

    /// A regulator in memory tracking at most `capacity` keys (at least 1).
    pub fn with_capacity(policy: RegulationPolicy, capacity: usize) -> Self {
        Self::with_store(policy, Arc::new(MemoryRegulation::with_capacity(capacity)))
    }

    /// The configuration's `[regulation]`, counted in `shared` (the store's table, seen by
    /// every process on it) or, without one, in this process's memory.
    pub fn from_config(config: &crate::Config, shared: Option<Arc<dyn RegulationStore>>) -> Self {
        let r = &config.regulation;
        let policy = RegulationPolicy {
            max_retries: r.max_retries,
            find_time: r.find_time,
            ban_time: r.ban_time,
        };
        match shared {
            Some(store) => Self::with_store(policy, store),
            None => Self::new(policy),
        }
    }

    /// A regulator keeping its counts in `store` (shared by every process that opens it).
    pub fn with_store(policy: RegulationPolicy, store: Arc<dyn RegulationStore>) -> Self {
        Regulator { policy, store }
    }

    /// The rules in force.
    pub fn policy(&self) -> &RegulationPolicy {
        &self.policy
    }

    fn enabled(&self) -> bool {
        self.policy.max_retries > 0
    }

    fn keys(user: Option<&str>, ip: Option<IpAddr>) -> Vec<String> {
        ip.map(ip_key).into_iter().chain(user.map(user_key)).collect()
    }

    /// True if this user or this client address is banned now (the caller answers exactly
    /// as for a wrong code). An unreadable store is an error: the caller refuses.
    pub fn is_banned(&self, user: Option<&str>, ip: IpAddr, now: i64) -> Result<bool, StoreError> {
        self.is_banned_from(user, Some(ip), now)
    }

    /// [`Regulator::is_banned`] for a client whose address may be unknown (a local PAM
    /// login): then only the user is looked at.
    pub fn is_banned_from(&self, user: Option<&str>, ip: Option<IpAddr>, now: i64) -> Result<bool, StoreError> {
        if !self.enabled() {
            return Ok(false);
        }
        self.store.banned(&Self::keys(user, ip), now)
    }

    /// Counts a failed attempt against both the user and the address; returns which got banned by it, if any.
    pub fn record_failure(&self, user: Option<&str>, ip: IpAddr, now: i64) -> Result<Banned, StoreError> {
        self.record_failure_from(user, Some(ip), now)
    }

    /// [`Regulator::record_failure`] for a client whose address may be unknown.
    pub fn record_failure_from(&self, user: Option<&str>, ip: Option<IpAddr>, now: i64) -> Result<Banned, StoreError> {
        if !self.enabled() {
            return Ok(Banned::default());
        }
        let mut banned = self.store.fail(&Self::keys(user, ip), now, &self.policy)?.into_iter();
        Ok(Banned {
            ip: ip.is_some() && banned.next().unwrap_or(false),
            user: user.is_some() && banned.next().unwrap_or(false),
        })
    }

    /// A success clears the user's failures (not the address's); a ban stands.
    pub fn record_success(&self, user: &str) -> Result<(), StoreError> {
        if !self.enabled() {
            return Ok(());
        }
        self.store.clear_failures(&user_key(user))
    }

    /// How many users and addresses are banned now (for metrics; 0 if the store fails).
    pub fn banned_count(&self, now: i64) -> usize {
        self.store.banned_count(now).unwrap_or(0)
    }

    /// How many users and addresses are tracked (for metrics and tests).
    pub fn tracked(&self) -> usize {
        self.store.tracked().unwrap_or(0)
    }

    /// Drops what no longer matters (the gateway calls it every minute).
    pub fn purge(&self, now: i64) -> Result<usize, StoreError> {
        self.store.purge(now, &self.policy)
    }
}

/// The conformance suite every [`RegulationStore`] passes (memory here; SQLite in the store
/// crate; Redis next). `store` must be empty.
#[allow(clippy::unwrap_used)] // a conformance check: a failed step is a failed test
pub fn check_store_contract(store: &dyn RegulationStore) {
    const T: i64 = 1_700_000_000;
    let policy = RegulationPolicy {
        max_retries: 3,
        find_time: 600,
        ban_time: 900,
    };
    let (a, b) = ("ip:192.0.2.1".to_string(), "user:alice".to_string());
    let both = [a.clone(), b.clone()];
    assert!(!store.banned(&both, T).unwrap(), "nothing recorded yet");
    assert_eq!(store.tracked().unwrap(), 0);
    assert_eq!(store.fail(&both, T, &policy).unwrap(), [false, false]);
    assert_eq!(store.fail(&both, T + 1, &policy).unwrap(), [false, false]);
    assert_eq!(store.tracked().unwrap(), 2);
    assert!(!store.banned(&both, T + 1).unwrap());
    assert_eq!(
        store.fail(&both, T + 2, &policy).unwrap(),
        [true, true],
        "the third bans"
    );
    assert!(store.banned(std::slice::from_ref(&a), T + 2).unwrap());
    assert!(store.banned(&[b.clone(), "ip:198.51.100.1".into()], T + 901).unwrap());
    assert_eq!(store.banned_count(T + 3).unwrap(), 2);
    // Failures during a ban neither count nor extend it; a success does not lift it.
    assert_eq!(store.fail(&both, T + 500, &policy).unwrap(), [false, false]);
    store.clear_failures(&b).unwrap();
    assert!(store.banned(std::slice::from_ref(&b), T + 901).unwrap());
    assert!(!store.banned(&both, T + 902).unwrap(), "ends exactly at its end");
    assert_eq!(store.banned_count(T + 902).unwrap(), 0);
    // Failures older than find_time do not count.
    let c = "ip:203.0.113.9".to_string();
    let one = std::slice::from_ref(&c);
    assert_eq!(store.fail(one, T, &policy).unwrap(), [false]);
    assert_eq!(store.fail(one, T + 300, &policy).unwrap(), [false]);
    assert_eq!(
        store.fail(one, T + 600, &policy).unwrap(),
        [false],
        "the first no longer counts"
    );
    assert_eq!(store.fail(one, T + 602, &policy).unwrap(), [true], "three within 600 s");
    // A cleared key starts again from nothing.
    let d = "user:bob".to_string();
    let bob = std::slice::from_ref(&d);
    store.fail(bob, T, &policy).unwrap();
    store.fail(bob, T, &policy).unwrap();
    store.clear_failures(&d).unwrap();
    assert_eq!(store.fail(bob, T + 1, &policy).unwrap(), [false], "cleared");
    // Purge drops what no longer matters, keeps running bans and counting failures.
    let dropped = store.purge(T + 1400, &policy).unwrap();
    assert_eq!(dropped, 3, "a and b (ban over, no failures), bob (failure too old)");
    assert!(store.banned(one, T + 1501).unwrap(), "c's ban (until T + 1502) is kept");
    assert_eq!(store.tracked().unwrap(), 1);
    assert_eq!(store.purge(T + 1400, &policy).unwrap(), 0, "nothing more to drop");
    // One failure at a time, also from many threads at once: exactly one of them bans.
    let many = RegulationPolicy {
        max_retries: 8,
        ..policy
    };
    let e = "ip:192.0.2.200".to_string();
    let bans = std::thread::scope(|s| {
        let threads: Vec<_> = (0..8)
            .map(|_| s.spawn(|| store.fail(std::slice::from_ref(&e), T, &many).unwrap()[0]))
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).filter(|b| *b).count()
    });
    assert_eq!(bans, 1, "eight concurrent failures, one ban");
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
        assert!(r.record_failure(None, a, T0).unwrap().ip);
        assert!(
            !r.record_failure(None, a, T0 + 1).unwrap().ip,
            "refused unseen during the ban"
        );
        assert!(!r.record_failure(None, a, T0 + 899).unwrap().ip);
        assert!(r.is_banned(None, a, T0 + 899).unwrap());
        assert!(
            !r.is_banned(None, a, T0 + 900).unwrap(),
            "not extended by the failures during it"
        );
        assert!(
            r.record_failure(None, a, T0 + 900).unwrap().ip,
            "after it, a failure counts again"
        );
    }

    #[test]
    fn a_full_table_evicts_only_to_admit_a_new_key() {
        let r = Regulator::with_capacity(RegulationPolicy::default(), 10);
        for i in 0..10u8 {
            r.record_failure(None, ip(&format!("192.0.2.{i}")), T0 + i64::from(i))
                .unwrap();
        }
        // Full, but this key is known: nothing is dropped, so 192.0.2.0 keeps its count.
        r.record_failure(None, ip("192.0.2.9"), T0 + 20).unwrap();
        let first = ip("192.0.2.0");
        let banned = (0..4)
            .map(|k| r.record_failure(None, first, T0 + 30 + k).unwrap().ip)
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
        let r = MemoryRegulation::with_capacity(6);
        let now = T0;
        let mut m = HashMap::new();
        let key = |i: u8| ip_key(ip(&format!("192.0.2.{i}")));
        m.insert(key(1), record(&[now - 601], 0, now - 601)); // old failure: goes
        m.insert(key(2), record(&[now - 600], 0, now - 600)); // exactly at the horizon: goes
        m.insert(key(3), record(&[now - 599], 0, now - 599)); // still counting: stays
        m.insert(key(4), record(&[], now, now - 900)); // ban ended just now: goes
        m.insert(key(5), record(&[], now + 1, now - 900)); // ban running: stays
        m.insert(key(6), record(&[now - 1], 0, now - 1)); // recent: stays
        r.evict(&mut m, now, &RegulationPolicy::default());
        let mut left: Vec<_> = m.keys().cloned().collect();
        left.sort();
        assert_eq!(
            left,
            vec![key(3), key(5), key(6)],
            "below capacity after the sweep: nothing else goes"
        );
    }

    #[test]
    fn eviction_then_drops_the_stalest_tenth_keeping_running_bans() {
        let store = Arc::new(MemoryRegulation::with_capacity(20));
        let now = T0;
        let mut m = HashMap::new();
        let key = |i: u8| ip_key(ip(&format!("192.0.2.{i}")));
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
        store.evict(&mut m, now, &RegulationPolicy::default());
        assert_eq!(m.len(), 18, "a tenth of the capacity goes");
        for i in [0, 1, 4, 19] {
            assert!(m.contains_key(&key(i)), "{i} stays");
        }
        for i in [2, 3] {
            assert!(!m.contains_key(&key(i)), "{i} is among the stalest unbanned");
        }
        let r = Regulator::with_store(RegulationPolicy::default(), store);
        assert_eq!(r.tracked(), 0, "evict works on the map it is given");
        r.record_failure(None, ip("192.0.2.1"), now).unwrap();
        assert_eq!(r.tracked(), 1);
    }

    #[test]
    fn the_memory_store_keeps_the_contract() {
        check_store_contract(&MemoryRegulation::default());
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
        assert_eq!(r.record_failure(Some("alice"), a, T0).unwrap(), Banned::default());
        assert_eq!(r.record_failure(Some("alice"), a, T0 + 1).unwrap(), Banned::default());
        assert!(!r.is_banned(Some("alice"), a, T0 + 1).unwrap());
        assert_eq!(
            r.record_failure(Some("alice"), a, T0 + 2).unwrap(),
            Banned { user: true, ip: true }
        );
        assert!(r.is_banned(Some("alice"), a, T0 + 2).unwrap());
        assert!(
            r.is_banned(Some("alice"), ip("198.51.100.1"), T0 + 2).unwrap(),
            "the user from anywhere"
        );
        assert!(r.is_banned(Some("bob"), a, T0 + 2).unwrap(), "anyone from that address");
        assert!(r.is_banned(None, a, T0 + 2).unwrap());
        assert!(!r.is_banned(Some("bob"), ip("198.51.100.1"), T0 + 2).unwrap());
        assert_eq!(r.banned_count(T0 + 2), 2);
    }

    #[test]
    fn a_ban_lasts_ban_time() {
        let r = Regulator::new(policy());
        let a = ip("192.0.2.1");
        for t in 0..3 {
            r.record_failure(Some("alice"), a, T0 + t).unwrap();
        }
        assert!(r.is_banned(Some("alice"), a, T0 + 2 + 899).unwrap());
        // Failures during the ban do not extend it.
        assert_eq!(r.record_failure(Some("alice"), a, T0 + 500).unwrap(), Banned::default());
        assert!(!r.is_banned(Some("alice"), a, T0 + 2 + 900).unwrap());
        assert_eq!(r.banned_count(T0 + 2 + 900), 0);
        // After it, counting starts afresh.
        assert_eq!(
            r.record_failure(Some("alice"), a, T0 + 1000).unwrap(),
            Banned::default()
        );
    }

    #[test]
    fn failures_older_than_find_time_do_not_count() {
        let r = Regulator::new(policy());
        let a = ip("192.0.2.1");
        r.record_failure(Some("alice"), a, T0).unwrap();
        r.record_failure(Some("alice"), a, T0 + 300).unwrap();
        // The first has aged out at T0 + 600.
        assert_eq!(r.record_failure(Some("alice"), a, T0 + 600).unwrap(), Banned::default());
        assert!(!r.is_banned(Some("alice"), a, T0 + 600).unwrap());
        assert_eq!(
            r.record_failure(Some("alice"), a, T0 + 601).unwrap(),
            Banned { user: true, ip: true }
        );
    }

    #[test]
    fn success_clears_the_user_not_the_address() {
        let r = Regulator::new(policy());
        let a = ip("192.0.2.1");
        r.record_failure(Some("alice"), a, T0).unwrap();
        r.record_failure(Some("alice"), a, T0 + 1).unwrap();
        r.record_success("alice").unwrap();
        assert_eq!(
            r.record_failure(Some("alice"), a, T0 + 2).unwrap(),
            Banned { user: false, ip: true }
        );
        assert!(!r.is_banned(Some("alice"), ip("198.51.100.1"), T0 + 2).unwrap());
    }

    #[test]
    fn failures_without_a_user_count_against_the_address() {
        let r = Regulator::new(policy());
        let a = ip("192.0.2.1");
        for (i, u) in [Some("a"), None, Some("c")].into_iter().enumerate() {
            let b = r.record_failure(u, a, T0 + i as i64).unwrap();
            assert_eq!(b.ip, i == 2);
            assert!(!b.user);
        }
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_v4_as_v4() {
        let r = Regulator::new(policy());
        r.record_failure(None, ip("2001:db8:1:2::1"), T0).unwrap();
        r.record_failure(None, ip("2001:db8:1:2::2"), T0).unwrap();
        r.record_failure(None, ip("2001:db8:1:2:ffff::3"), T0).unwrap();
        assert!(r.is_banned(None, ip("2001:db8:1:2::99"), T0).unwrap());
        assert!(!r.is_banned(None, ip("2001:db8:1:3::1"), T0).unwrap());
        for _ in 0..3 {
            r.record_failure(None, ip("::ffff:192.0.2.9"), T0).unwrap();
        }
        assert!(r.is_banned(None, ip("192.0.2.9"), T0).unwrap());
    }

    #[test]
    fn zero_max_retries_disables() {
        let r = Regulator::new(RegulationPolicy {
            max_retries: 0,
            ..policy()
        });
        let a = ip("192.0.2.1");
        for t in 0..100 {
            assert_eq!(r.record_failure(Some("alice"), a, T0 + t).unwrap(), Banned::default());
        }
        assert!(!r.is_banned(Some("alice"), a, T0 + 100).unwrap());
        assert_eq!(r.tracked(), 0);
    }

    #[test]
    fn memory_is_bounded_and_the_stalest_go_first() {
        let r = Regulator::with_capacity(policy(), 100);
        // A running ban is kept over newer counts.
        for t in 0..3 {
            r.record_failure(None, ip("203.0.113.1"), T0 + t).unwrap();
        }
        for i in 0..1000u32 {
            let a = IpAddr::V4((0x0a00_0000 + i).into());
            r.record_failure(None, a, T0 + 10 + i64::from(i / 10)).unwrap();
            assert!(r.tracked() <= 100);
        }
        assert!(r.is_banned(None, ip("203.0.113.1"), T0 + 200).unwrap());
        // The most recent addresses are still counted.
        let last = IpAddr::V4((0x0a00_0000 + 999u32).into());
        r.record_failure(None, last, T0 + 200).unwrap();
        assert_eq!(
            r.record_failure(None, last, T0 + 201).unwrap(),
            Banned { user: false, ip: true }
        );
    }
}
