//! Sessions, regulation counts and bans, and enrollment links in Redis (or Valkey), shared
//! by every gateway that names the same server and key prefix.
//!
//! All policy stays in the core: a regulation record is read, changed by
//! [`Record::fail`](portcullis_core::regulation::Record::fail) and written back only if
//! nobody changed it meanwhile (a compare-and-set script), so two nodes counting at once
//! both count. What must happen once (a first view of an enrollment link, touching a
//! session that may have been deleted) is one script, never a read followed by a write.

use crate::bridge::{Bridge, describe, secret_file};
use crate::columns::{token_from_columns, token_kind_period};
use portcullis_core::StoreError;
use portcullis_core::config::StateConfig;
use portcullis_core::invite::{Invite, InviteStore};
use portcullis_core::model::Token;
use portcullis_core::regulation::{Record, RegulationPolicy, RegulationStore};
use portcullis_core::session::{Level, Revocation, Session, SessionBackend, new_token, token_hash};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{AsyncCommands, Script};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use zeroize::Zeroizing;

/// Sets KEYS[1] to ARGV[2] only if it still holds ARGV[1] ("" = absent); ARGV[2] "" deletes
/// it. KEYS[2] (touched) and KEYS[3] (bans) index the record by ARGV[5] with scores ARGV[3]
/// and ARGV[4]. 1 if written, 0 if someone else changed it first.
const CAS_RECORD: &str = r"
local cur = redis.call('GET', KEYS[1]) or ''
if cur ~= ARGV[1] then return 0 end
if ARGV[2] == '' then
  redis.call('DEL', KEYS[1])
  redis.call('ZREM', KEYS[2], ARGV[5])
  redis.call('ZREM', KEYS[3], ARGV[5])
else
  redis.call('SET', KEYS[1], ARGV[2])
  redis.call('ZADD', KEYS[2], ARGV[3], ARGV[5])
  if tonumber(ARGV[4]) > 0 then redis.call('ZADD', KEYS[3], ARGV[4], ARGV[5]) end
end
return 1
";

/// Moves a session's last_seen forward (never back, never creating one): KEYS[1] the
/// session, KEYS[2] the last-seen index; ARGV[1] the time, ARGV[2] its member name.
const TOUCH_SESSION: &str = r"
local cur = redis.call('HGET', KEYS[1], 'last_seen')
if not cur then return 0 end
if tonumber(ARGV[1]) > tonumber(cur) then
  redis.call('HSET', KEYS[1], 'last_seen', ARGV[1])
  redis.call('ZADD', KEYS[2], ARGV[1], ARGV[2])
end
return 1
";

/// The start of a message on the revocation channel that names a changed user (the
/// others are the hex ids of ended sessions).
const USER_MESSAGE: &str = "user:";

/// Deletes the sessions named in ARGV[2..] (hex ids) and their index entries; ARGV[1] the
/// key prefix. Returns how many existed.
const DELETE_SESSIONS: &str = r"
local p = ARGV[1]
local n = 0
for i = 2, #ARGV do
  local id = ARGV[i]
  local user = redis.call('HGET', p .. 'session:' .. id, 'user')
  if user then
    n = n + 1
    redis.call('SREM', p .. 'user-sessions:' .. user, id)
  end
  redis.call('DEL', p .. 'session:' .. id)
  redis.call('ZREM', p .. 'sessions', id)
  redis.call('ZREM', p .. 'sessions:seen', id)
  redis.call('PUBLISH', p .. 'revoked', id)
end
return n
";

/// Deletes every invitation of ARGV[2] (a user; ARGV[1] the prefix) and, with ARGV[3..5]
/// (hex id, expiry), makes a new one. Returns 1.
const REPLACE_INVITES: &str = r"
local p = ARGV[1]
local set = p .. 'user-invites:' .. ARGV[2]
for _, id in ipairs(redis.call('SMEMBERS', set)) do
  redis.call('DEL', p .. 'invite:' .. id)
  redis.call('ZREM', p .. 'invites', id)
end
redis.call('DEL', set)
if ARGV[3] then
  redis.call('HSET', p .. 'invite:' .. ARGV[3], 'user', ARGV[2], 'expires', ARGV[4])
  redis.call('SADD', set, ARGV[3])
  redis.call('ZADD', p .. 'invites', ARGV[4], ARGV[3])
end
return 1
";

/// Deletes the invitation ARGV[2] (hex id; ARGV[1] the prefix) and every other
/// one of its user. 1 if it existed, 0 if not (so of two at once, one consumes it).
const CONSUME_INVITE: &str = r"
local p = ARGV[1]
local user = redis.call('HGET', p .. 'invite:' .. ARGV[2], 'user')
if not user then return 0 end
local set = p .. 'user-invites:' .. user
for _, id in ipairs(redis.call('SMEMBERS', set)) do
  redis.call('DEL', p .. 'invite:' .. id)
  redis.call('ZREM', p .. 'invites', id)
end
redis.call('DEL', set)
redis.call('DEL', p .. 'invite:' .. ARGV[2])
return 1
";

/// The first view of an invitation: KEYS[1] the invite; ARGV[1] now, ARGV[2..] the pending
/// token's fields as name, value pairs. 0: none (or expired); 1: stored now; 2: already.
const OPEN_INVITE: &str = r"
local expires = redis.call('HGET', KEYS[1], 'expires')
if not expires or tonumber(expires) <= tonumber(ARGV[1]) then return 0 end
if redis.call('HEXISTS', KEYS[1], 'pending_secret') == 1 then return 2 end
for i = 2, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
return 1
";

/// The primary server: its client (for the revocation subscription's own connection) and
/// the shared connection. With Sentinel both are replaced when the primary moves.
struct Primary {
    current: std::sync::RwLock<(redis::Client, ConnectionManager)>,
    sentinel: Option<tokio::sync::Mutex<SentinelClient>>,
    config: ConnectionManagerConfig,
    /// A relocation is under way: failures meanwhile do not start another.
    moving: AtomicBool,
}

impl Primary {
    fn connection(&self) -> ConnectionManager {
        self.current.read().unwrap_or_else(|p| p.into_inner()).1.clone()
    }

    fn client(&self) -> redis::Client {
        self.current.read().unwrap_or_else(|p| p.into_inner()).0.clone()
    }

    /// Asks the sentinels where the primary is and connects there.
    async fn locate(
        sentinel: &tokio::sync::Mutex<SentinelClient>,
        config: &ConnectionManagerConfig,
    ) -> redis::RedisResult<(redis::Client, ConnectionManager)> {
        let client = sentinel.lock().await.async_get_client().await?;
        let conn = ConnectionManager::new_with_config(client.clone(), config.clone()).await?;
        Ok((client, conn))
    }

    /// After `e`, asks the sentinels again in the background when the primary may have
    /// moved (unreachable, or demoted: READONLY). The failed request stays refused.
    fn after(self: &Arc<Self>, e: &redis::RedisError, bridge: &Bridge) {
        let moved =
            e.is_connection_refusal() || e.is_timeout() || e.is_connection_dropped() || e.code() == Some("READONLY");
        if self.sentinel.is_none() || !moved || self.moving.swap(true, Ordering::AcqRel) {
            return;
        }
        let me = self.clone();
        bridge.spawn(async move {
            me.relocate().await;
            me.moving.store(false, Ordering::Release);
        });
    }

    /// Asks the sentinels (if any) where the primary is now, and connects there.
    async fn relocate(&self) {
        if let Some(sentinel) = &self.sentinel
            && let Ok(found) = Primary::locate(sentinel, &self.config).await
        {
            *self.current.write().unwrap_or_else(|p| p.into_inner()) = found;
        }
    }
}

/// Sessions, regulation and invitations in one Redis database under one key prefix.
pub struct RedisState {
    /// Where the primary is now, and the connection to it.
    primary: Arc<Primary>,
    prefix: String,
    bridge: Bridge,
    cas: Script,
    touch: Script,
    delete_sessions: Script,
    replace_invites: Script,
    consume_invite: Script,
    open_invite: Script,
}

impl std::fmt::Debug for RedisState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RedisState({} {})", self.bridge.name, self.prefix)
    }
}

/// Hex of a 32-byte hash (the member name of a session or invitation).
fn hex(hash: &[u8; 32]) -> String {
    hash.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    text.len()
        .is_multiple_of(2)
        .then(|| {
            (0..text.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
                .collect()
        })
        .flatten()
}

/// A regulation record as stored: `banned_until touched f1,f2,…`.
fn record_text(r: &Record) -> String {
    let failures: Vec<String> = r.failures.iter().map(i64::to_string).collect();
    format!("{} {} {}", r.banned_until, r.touched, failures.join(","))
}

fn record_parse(text: &str) -> Record {
    let mut parts = text.splitn(3, ' ');
    let mut number = || parts.next().and_then(|t| t.parse().ok()).unwrap_or(0);
    let (banned_until, touched) = (number(), number());
    let failures = text
        .splitn(3, ' ')
        .nth(2)
        .unwrap_or("")
        .split(',')
        .filter_map(|t| t.parse().ok())
        .collect();
    Record {
        failures,
        banned_until,
        touched,
    }
}

fn session_from(id: &str, fields: &HashMap<String, String>) -> Option<([u8; 32], Session)> {
    let hash: [u8; 32] = unhex(id)?.try_into().ok()?;
    let number = |k: &str| fields.get(k).and_then(|v| v.parse::<i64>().ok());
    let text = |k: &str| fields.get(k).filter(|v| !v.is_empty()).cloned();
    let session = Session {
        user: fields.get("user")?.clone(),
        groups: fields
            .get("groups")
            .map(|g| crate::columns::groups_parse(g))
            .unwrap_or_default(),
        display_name: text("display_name"),
        email: text("email"),
        level: Level::parse(fields.get("level")?)?,
        created: number("created")?,
        last_seen: number("last_seen")?,
        client_ip: text("client_ip").and_then(|ip| ip.parse().ok()),
        factor: text("factor").and_then(|f| unhex(&f)).and_then(|f| f.try_into().ok()),
    };
    Some((hash, session))
}

impl RedisState {
    /// Connects to the server `config` names (paths resolved with `resolve`) and checks
    /// that it answers.
    pub fn open(config: &StateConfig, resolve: &dyn Fn(&Path) -> std::path::PathBuf) -> Result<Self, StoreError> {
        let timeout = Duration::from_secs(config.timeout);
        // Messages name the server, or the primary and where it is asked for.
        let name = if config.uses_sentinel() {
            format!("{} via sentinels {}", config.master_name, config.sentinels.join(","))
        } else {
            config.url.clone()
        };
        let bridge = Bridge::new("Redis", name, timeout)?;
        let password = match &config.password_file {
            Some(file) => Some(secret_file(&resolve(file), "[state] password_file")?),
            None => None,
        };
        let ca = match &config.ca_file {
            Some(ca) => {
                let ca = resolve(ca);
                Some(std::fs::read(&ca).map_err(|e| StoreError::File {
                    path: ca.clone(),
                    message: format!(
                        "[state] ca_file: {}",
                        portcullis_core::config::explain_unreadable(&ca, &e)
                    ),
                })?)
            }
            None => None,
        };
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1);
        let (sentinel, found) = if config.uses_sentinel() {
            let sentinel = tokio::sync::Mutex::new(
                sentinel_client(config, password.as_deref().map(|p| p.as_str()), ca)
                    .map_err(|e| bridge.fail(format!("[state] sentinels: {}", describe(&e))))?,
            );
            let found = bridge.run(Primary::locate(&sentinel, &manager_config), |e| fault(&bridge, &e))?;
            (Some(sentinel), found)
        } else {
            let client = plain_client(config, password.as_deref().map(|p| p.as_str()), ca)
                .map_err(|e| bridge.fail(format!("[state] url: {}", describe(&e))))?;
            let conn = bridge.run(
                ConnectionManager::new_with_config(client.clone(), manager_config.clone()),
                |e| fault(&bridge, &e),
            )?;
            (None, (client, conn))
        };
        let primary = Arc::new(Primary {
            current: std::sync::RwLock::new(found),
            sentinel,
            config: manager_config,
            moving: AtomicBool::new(false),
        });
        let state = RedisState {
            primary,
            prefix: config.key_prefix.clone(),
            bridge,
            cas: Script::new(CAS_RECORD),
            touch: Script::new(TOUCH_SESSION),
            delete_sessions: Script::new(DELETE_SESSIONS),
            replace_invites: Script::new(REPLACE_INVITES),
            consume_invite: Script::new(CONSUME_INVITE),
            open_invite: Script::new(OPEN_INVITE),
        };
        state.ping()?;
        Ok(state)
    }

    /// Whether the server answers now.
    pub fn ping(&self) -> Result<(), StoreError> {
        self.run(|mut c| async move { redis::cmd("PING").query_async::<String>(&mut c).await.map(drop) })
    }

    /// Runs `work` with a handle on the connection, bounded by `[state] timeout`.
    fn run<T, F>(&self, work: impl FnOnce(ConnectionManager) -> F) -> Result<T, StoreError>
    where
        F: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let conn = self.primary.connection();
        self.bridge.run(work(conn), |e| {
            self.primary.after(&e, &self.bridge);
            fault(&self.bridge, &e)
        })
    }

    fn key(&self, rest: &str) -> String {
        format!("{}{rest}", self.prefix)
    }

    /// Applies `change` to the record under `key` until it lands unraced; its result.
    fn change_record<R>(&self, key: &str, now: i64, change: impl Fn(&mut Record) -> R) -> Result<R, StoreError> {
        let (record_key, touched, bans) = (
            self.key(&format!("reg:{key}")),
            self.key("reg:keys"),
            self.key("reg:bans"),
        );
        for _ in 0..100 {
            let old: Option<String> = self.run(|mut c| {
                let k = record_key.clone();
                async move { c.get(k).await }
            })?;
            let old = old.unwrap_or_default();
            let mut record = if old.is_empty() {
                Record::default()
            } else {
                record_parse(&old)
            };
            let result = change(&mut record);
            record.touched = record.touched.max(now);
            let new = record_text(&record);
            let written: i64 = self.run(|mut c| {
                let mut invocation = self.cas.key(&record_key);
                invocation
                    .key(&touched)
                    .key(&bans)
                    .arg(&old)
                    .arg(&new)
                    .arg(record.touched)
                    .arg(record.banned_until)
                    .arg(key);
                async move { invocation.invoke_async(&mut c).await }
            })?;
            if written == 1 {
                return Ok(result);
            }
        }
        Err(self.bridge.fail(format!(
            "the regulation record {key} changed 100 times while being counted"
        )))
    }
}

impl RegulationStore for RedisState {
    fn banned(&self, keys: &[String], now: i64) -> Result<bool, StoreError> {
        if keys.is_empty() {
            return Ok(false);
        }
        let names: Vec<String> = keys.iter().map(|k| self.key(&format!("reg:{k}"))).collect();
        let values: Vec<Option<String>> = self.run(|mut c| async move { c.mget(names).await })?;
        Ok(values.iter().flatten().any(|v| now < record_parse(v).banned_until))
    }

    fn fail(&self, keys: &[String], now: i64, policy: &RegulationPolicy) -> Result<Vec<bool>, StoreError> {
        keys.iter()
            .map(|k| self.change_record(k, now, |r| r.fail(now, policy)))
            .collect()
    }

    fn clear_failures(&self, key: &str) -> Result<(), StoreError> {
        self.change_record(key, 0, |r| r.failures.clear())
    }

    fn banned_count(&self, now: i64) -> Result<usize, StoreError> {
        let bans = self.key("reg:bans");
        self.run(|mut c| async move { c.zcount(bans, format!("({now}"), "+inf").await })
    }

    fn tracked(&self) -> Result<usize, StoreError> {
        let keys = self.key("reg:keys");
        self.run(|mut c| async move { c.zcard(keys).await })
    }

    fn purge(&self, now: i64, policy: &RegulationPolicy) -> Result<usize, StoreError> {
        let index = self.key("reg:keys");
        let members: Vec<String> = self.run(|mut c| async move { c.zrange(index, 0, -1).await })?;
        let mut dropped = 0;
        for key in members {
            let record_key = self.key(&format!("reg:{key}"));
            let old: Option<String> = self.run(|mut c| {
                let k = record_key.clone();
                async move { c.get(k).await }
            })?;
            let stale = old.as_deref().is_none_or(|v| !record_parse(v).matters(now, policy));
            if !stale {
                continue;
            }
            let (touched, bans) = (self.key("reg:keys"), self.key("reg:bans"));
            let written: i64 = self.run(|mut c| {
                let mut invocation = self.cas.key(&record_key);
                invocation
                    .key(&touched)
                    .key(&bans)
                    .arg(old.clone().unwrap_or_default())
                    .arg("")
                    .arg(0)
                    .arg(0)
                    .arg(&key);
                async move { invocation.invoke_async(&mut c).await }
            })?;
            dropped += usize::try_from(written).unwrap_or(0);
        }
        Ok(dropped)
    }
}

impl SessionBackend for RedisState {
    fn ping(&self) -> Result<(), StoreError> {
        RedisState::ping(self)
    }

    fn watch(&self, revoked: portcullis_core::session::Revoked) -> Result<(), StoreError> {
        let primary = self.primary.clone();
        let channel = self.key("revoked");
        let subscribe = |client: redis::Client, channel: String| async move {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&channel).await?;
            Ok::<_, redis::RedisError>(pubsub)
        };
        // Subscribed before this returns, so nothing revoked from now on is missed.
        let first = self.bridge.run(subscribe(primary.client(), channel.clone()), |e| {
            fault(&self.bridge, &e)
        })?;
        self.bridge.spawn(async move {
            let mut current = Some(first);
            loop {
                let pubsub = match current.take() {
                    Some(p) => p,
                    None => {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        match subscribe(primary.client(), channel.clone()).await {
                            // What ended while no one listened is unknown: drop every copy.
                            Ok(p) => {
                                revoked(Revocation::All);
                                p
                            }
                            // The primary may have moved (Sentinel): ask before the next try.
                            Err(_) => {
                                primary.relocate().await;
                                continue;
                            }
                        }
                    }
                };
                let mut messages = pubsub.into_on_message();
                while let Some(message) = futures_util::StreamExt::next(&mut messages).await {
                    let Ok(payload) = message.get_payload::<String>() else {
                        continue;
                    };
                    if let Some(user) = payload.strip_prefix(USER_MESSAGE) {
                        revoked(Revocation::User(user));
                    } else if let Some(hash) = unhex(&payload).and_then(|h| <[u8; 32]>::try_from(h).ok()) {
                        revoked(Revocation::Session(&hash));
                    }
                }
                // The connection is gone: copies may go stale until the next subscription.
                revoked(Revocation::All);
            }
        });
        Ok(())
    }

    fn load(&self, _now: i64) -> Result<Vec<([u8; 32], Session)>, StoreError> {
        let index = self.key("sessions");
        let ids: Vec<String> = self.run(|mut c| async move { c.zrange(index, 0, -1).await })?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let key = self.key(&format!("session:{id}"));
            let fields: HashMap<String, String> = self.run(|mut c| async move { c.hgetall(key).await })?;
            out.extend(session_from(&id, &fields));
        }
        Ok(out)
    }

    fn get(&self, hash: &[u8; 32]) -> Result<Option<Session>, StoreError> {
        let id = hex(hash);
        let key = self.key(&format!("session:{id}"));
        let fields: HashMap<String, String> = self.run(|mut c| async move { c.hgetall(key).await })?;
        Ok(session_from(&id, &fields).map(|(_, s)| s))
    }

    fn put(&self, hash: &[u8; 32], s: &Session) -> Result<(), StoreError> {
        let id = hex(hash);
        let key = self.key(&format!("session:{id}"));
        let fields: Vec<(&str, String)> = vec![
            ("user", s.user.clone()),
            ("groups", crate::columns::groups_text(&s.groups)),
            ("display_name", s.display_name.clone().unwrap_or_default()),
            ("email", s.email.clone().unwrap_or_default()),
            ("level", s.level.label().to_string()),
            ("created", s.created.to_string()),
            ("last_seen", s.last_seen.to_string()),
            ("client_ip", s.client_ip.map(|ip| ip.to_string()).unwrap_or_default()),
            (
                "factor",
                s.factor
                    .map(|f| f.iter().map(|b| format!("{b:02x}")).collect())
                    .unwrap_or_default(),
            ),
        ];
        let mut pipe = redis::pipe();
        pipe.atomic()
            .del(&key)
            .ignore()
            .hset_multiple(&key, &fields)
            .ignore()
            .zadd(self.key("sessions"), &id, s.created)
            .ignore()
            .zadd(self.key("sessions:seen"), &id, s.last_seen)
            .ignore()
            .sadd(self.key(&format!("user-sessions:{}", s.user)), &id)
            .ignore();
        self.run(|mut c| async move { pipe.query_async::<()>(&mut c).await })
    }

    fn touch(&self, hash: &[u8; 32], last_seen: i64) -> Result<(), StoreError> {
        let id = hex(hash);
        let mut invocation = self.touch.key(self.key(&format!("session:{id}")));
        invocation.key(self.key("sessions:seen")).arg(last_seen).arg(&id);
        self.run(|mut c| async move { invocation.invoke_async::<i64>(&mut c).await.map(drop) })
    }

    fn delete(&self, hash: &[u8; 32]) -> Result<(), StoreError> {
        self.delete_ids(vec![hex(hash)])
    }

    fn delete_user(&self, user: &str) -> Result<(), StoreError> {
        let set = self.key(&format!("user-sessions:{user}"));
        let ids: Vec<String> = self.run(|mut c| async move { c.smembers(set).await })?;
        self.delete_ids(ids)?;
        // Basic credentials cached by the nodes hold no session: they are told as well.
        self.announce_user(user)
    }

    fn announce_user(&self, user: &str) -> Result<(), StoreError> {
        let (channel, message) = (self.key("revoked"), format!("{USER_MESSAGE}{user}"));
        self.run(|mut c| async move { c.publish::<_, _, ()>(channel, message).await })
    }

    fn purge(&self, now_minus_absolute: i64, now_minus_idle: i64) -> Result<(), StoreError> {
        let (created, seen) = (self.key("sessions"), self.key("sessions:seen"));
        let mut ids: Vec<String> = self.run(|mut c| async move {
            let mut old: Vec<String> = c.zrangebyscore(created, "-inf", now_minus_absolute).await?;
            let idle: Vec<String> = c.zrangebyscore(seen, "-inf", now_minus_idle).await?;
            old.extend(idle);
            Ok(old)
        })?;
        ids.sort_unstable();
        ids.dedup();
        self.delete_ids(ids)
    }
}

impl RedisState {
    fn delete_ids(&self, ids: Vec<String>) -> Result<(), StoreError> {
        for chunk in ids.chunks(500) {
            let mut invocation = self.delete_sessions.arg(&self.prefix);
            for id in chunk {
                invocation.arg(id);
            }
            self.run(|mut c| async move { invocation.invoke_async::<i64>(&mut c).await.map(drop) })?;
        }
        Ok(())
    }

    fn invite_from(&self, fields: &HashMap<String, String>) -> Option<Invite> {
        let pending = fields.get("pending_secret").and_then(|s| unhex(s)).map(|secret| {
            let number = |k: &str| fields.get(k).and_then(|v| v.parse::<u32>().ok()).unwrap_or(0);
            let text = |k: &str| fields.get(k).map(String::as_str).unwrap_or("");
            let mut t = token_from_columns(
                text("pending_kind"),
                number("pending_period"),
                secret,
                text("pending_algorithm"),
                number("pending_digits"),
            );
            t.motp_pin = fields
                .get("pending_motp_pin")
                .filter(|p| !p.is_empty())
                .map(|p| Zeroizing::new(p.clone()));
            t
        });
        Some(Invite {
            user: fields.get("user")?.clone(),
            expires: fields.get("expires")?.parse().ok()?,
            pending,
        })
    }

    fn invite_fields(&self, id: &str) -> Result<HashMap<String, String>, StoreError> {
        let key = self.key(&format!("invite:{id}"));
        self.run(|mut c| async move { c.hgetall(key).await })
    }
}

impl InviteStore for RedisState {
    fn create(&self, user: &str, expires: i64) -> Result<Zeroizing<String>, StoreError> {
        let (token, hash) = new_token();
        let mut invocation = self.replace_invites.arg(&self.prefix);
        invocation.arg(user).arg(hex(&hash)).arg(expires);
        self.run(|mut c| async move { invocation.invoke_async::<i64>(&mut c).await.map(drop) })?;
        Ok(token)
    }

    fn find(&self, token: &str, now: i64) -> Result<Option<Invite>, StoreError> {
        let Some(hash) = token_hash(token) else {
            return Ok(None);
        };
        let fields = self.invite_fields(&hex(&hash))?;
        Ok(self.invite_from(&fields).filter(|i| i.expires > now))
    }

    fn open(&self, token: &str, now: i64, fresh: Token) -> Result<Option<(Invite, bool)>, StoreError> {
        let Some(hash) = token_hash(token) else {
            return Ok(None);
        };
        let id = hex(&hash);
        let (kind, period) = token_kind_period(&fresh);
        let secret: String = fresh.secret.as_bytes().iter().map(|b| format!("{b:02x}")).collect();
        let secret = Zeroizing::new(secret);
        let mut invocation = self.open_invite.key(self.key(&format!("invite:{id}")));
        invocation
            .arg(now)
            .arg("pending_kind")
            .arg(kind)
            .arg("pending_period")
            .arg(period)
            .arg("pending_secret")
            .arg(secret.as_str())
            .arg("pending_algorithm")
            .arg(fresh.algorithm.name())
            .arg("pending_digits")
            .arg(fresh.digits)
            .arg("pending_motp_pin")
            .arg(fresh.motp_pin.as_ref().map_or("", |p| p.as_str()));
        let outcome: i64 = self.run(|mut c| async move { invocation.invoke_async(&mut c).await })?;
        if outcome == 0 {
            return Ok(None);
        }
        let fields = self.invite_fields(&id)?;
        let Some(mut invite) = self.invite_from(&fields) else {
            return Ok(None);
        };
        if outcome == 1 {
            invite.pending = Some(fresh);
        }
        Ok(Some((invite, outcome == 1)))
    }

    fn consume(&self, token: &str) -> Result<bool, StoreError> {
        let Some(hash) = token_hash(token) else {
            return Ok(false);
        };
        let mut invocation = self.consume_invite.arg(&self.prefix);
        invocation.arg(hex(&hash));
        let found: i64 = self.run(|mut c| async move { invocation.invoke_async(&mut c).await })?;
        Ok(found == 1)
    }

    fn purge(&self, now: i64) -> Result<usize, StoreError> {
        let index = self.key("invites");
        let ids: Vec<String> = self.run(|mut c| async move { c.zrangebyscore(index, "-inf", now).await })?;
        let mut dropped = 0;
        for id in ids {
            let fields = self.invite_fields(&id)?;
            let key = self.key(&format!("invite:{id}"));
            let mut pipe = redis::pipe();
            pipe.atomic().del(&key).ignore().zrem(self.key("invites"), &id).ignore();
            if let Some(user) = fields.get("user") {
                pipe.srem(self.key(&format!("user-invites:{user}")), &id).ignore();
            }
            self.run(|mut c| async move { pipe.query_async::<()>(&mut c).await })?;
            dropped += 1;
        }
        Ok(dropped)
    }
}

/// A client for the one server `[state] url` names.
fn plain_client(
    config: &StateConfig,
    password: Option<&str>,
    ca: Option<Vec<u8>>,
) -> redis::RedisResult<redis::Client> {
    let mut info: redis::ConnectionInfo = redis::IntoConnectionInfo::into_connection_info(config.url.as_str())?;
    let mut settings = info.redis_settings().clone();
    if !config.username.is_empty() {
        settings = settings.set_username(config.username.clone());
    }
    if let Some(password) = password {
        settings = settings.set_password(password);
    }
    info = info.set_redis_settings(settings);
    match ca {
        Some(pem) => redis::Client::build_with_tls(
            info,
            redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(pem),
            },
        ),
        None => redis::Client::open(info),
    }
}

/// A client of the sentinels that finds the primary `[state] master_name`; the primary's
/// credentials (and TLS, with `ca_file`, to sentinels and primary alike) are the state's.
fn sentinel_client(
    config: &StateConfig,
    password: Option<&str>,
    ca: Option<Vec<u8>>,
) -> redis::RedisResult<SentinelClient> {
    let addrs = config.sentinels.iter().map(|s| {
        let (host, port) = s.rsplit_once(':').unwrap_or((s.as_str(), "26379"));
        let port = port.parse().unwrap_or(26379);
        match ca {
            Some(_) => redis::ConnectionAddr::TcpTls {
                host: host.to_string(),
                port,
                insecure: false,
                tls_params: None,
            },
            None => redis::ConnectionAddr::Tcp(host.to_string(), port),
        }
    });
    let mut b = SentinelClientBuilder::new(
        addrs.collect::<Vec<_>>(),
        &config.master_name,
        SentinelServerType::Master,
    )?;
    if !config.username.is_empty() {
        b = b.set_client_to_redis_username(&config.username);
    }
    if let Some(password) = password {
        b = b.set_client_to_redis_password(password);
    }
    if let Some(pem) = ca {
        let certs = || redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(pem.clone()),
        };
        b = b
            .set_client_to_redis_tls_mode(redis::TlsMode::Secure)
            .set_client_to_redis_certificates(certs())
            .set_client_to_sentinel_tls_mode(redis::TlsMode::Secure)
            .set_client_to_sentinel_certificates(certs());
    }
    b.build()
}

/// A Redis error as a store error: a connection refused, dropped or timed out is the
/// server not answering ([`StoreError::Unreachable`]); anything else it said is an error.
fn fault(bridge: &Bridge, e: &redis::RedisError) -> StoreError {
    if e.is_connection_refusal() || e.is_timeout() || e.is_connection_dropped() {
        bridge.unreachable(describe(e))
    } else {
        bridge.classify(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_and_ids_round_trip() {
        let r = Record {
            failures: [100, 105].into_iter().collect(),
            banned_until: 900,
            touched: 105,
        };
        assert_eq!(record_text(&record_parse(&record_text(&r))), "900 105 100,105");
        assert_eq!(record_parse("").banned_until, 0);
        let h = [0xab; 32];
        assert_eq!(unhex(&hex(&h)).as_deref(), Some(&h[..]));
        assert_eq!(unhex("abc"), None);
        assert_eq!(unhex("zz"), None);
    }
}
