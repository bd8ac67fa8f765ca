//! HTTP basic auth against bcrypt hashes (`basic_auth_users`), as exporter-toolkit does it:
//! every path is authenticated, `/healthz` included; a failure is a 401 with
//! `WWW-Authenticate: Basic`.
//!
//! - A bcrypt check costs tens of milliseconds by design. A successful (user, password) pair is
//!   remembered for [`CACHE_TTL`] (keyed by an HMAC under a key drawn at startup, so the cache
//!   holds no password), so a scrape every few seconds costs one hash per five minutes.
//! - Hashing runs on its own threads, at most [`MAX_HASHING`] at once, so a flood of wrong
//!   passwords neither blocks the server's event loop nor starves the collector's threads; a
//!   request that waits longer than `wait` for its turn gets 503.
//! - An unknown user is checked against a dummy hash of the same cost as the slowest real one,
//!   so the time taken does not tell which users exist.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use ring::hmac;
use tokio::sync::Semaphore;

/// How long a verified (user, password) pair is trusted without hashing again.
pub const CACHE_TTL: Duration = Duration::from_secs(300);
/// Most pairs remembered (more are forgotten, oldest first).
const CACHE_MAX: usize = 100;
/// Most bcrypt checks running at once.
pub const MAX_HASHING: usize = 2;

/// The outcome of checking a request's `Authorization` header.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    Denied,
    /// Too many checks queued: try again later (503).
    Busy,
}

pub struct BasicAuth {
    users: BTreeMap<String, String>,
    dummy_hash: String,
    key: hmac::Key,
    cache: Mutex<HashMap<Vec<u8>, Instant>>,
    hashing: Arc<Semaphore>,
    wait: Duration,
}

impl BasicAuth {
    /// `users` maps a user to a bcrypt hash (checked by [`super::config`]). Costs one bcrypt
    /// hash, to make the dummy.
    pub fn new(users: BTreeMap<String, String>, wait: Duration) -> Result<Self, String> {
        let cost = users
            .values()
            .filter_map(|h| h.parse::<bcrypt::HashParts>().ok())
            .map(|p| p.get_cost())
            .max()
            .unwrap_or(bcrypt::DEFAULT_COST);
        let dummy_hash = bcrypt::hash("walwatch: no such user", cost)
            .map_err(|e| format!("cannot compute a bcrypt hash: {e}"))?;
        let rng = ring::rand::SystemRandom::new();
        let key = hmac::Key::generate(hmac::HMAC_SHA256, &rng)
            .map_err(|_| "cannot draw a random key from the system".to_owned())?;
        Ok(Self {
            users,
            dummy_hash,
            key,
            cache: Mutex::new(HashMap::new()),
            hashing: Arc::new(Semaphore::new(MAX_HASHING)),
            wait,
        })
    }

    /// Checks an `Authorization` header value (or its absence).
    pub async fn check(&self, authorization: Option<&[u8]>) -> Verdict {
        let Some((user, password)) = authorization.and_then(parse_basic) else {
            return Verdict::Denied;
        };
        let mut msg = Vec::with_capacity(user.len() + password.len() + 1);
        msg.extend_from_slice(user.as_bytes());
        msg.push(0);
        msg.extend_from_slice(&password);
        let cache_key = hmac::sign(&self.key, &msg).as_ref().to_vec();
        if self.cached(&cache_key) {
            return Verdict::Allowed;
        }
        let known = self.users.get(&user);
        let hash = known.unwrap_or(&self.dummy_hash).clone();
        let Ok(Ok(permit)) =
            tokio::time::timeout(self.wait, self.hashing.clone().acquire_owned()).await
        else {
            return Verdict::Busy;
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        let spawned = std::thread::Builder::new()
            .name("walwatch-bcrypt".into())
            .spawn(move || {
                let ok = bcrypt::verify(&password, &hash).unwrap_or(false);
                drop(permit);
                let _ = tx.send(ok);
            });
        if spawned.is_err() {
            return Verdict::Busy;
        }
        let ok = rx.await.unwrap_or(false) && known.is_some();
        if !ok {
            return Verdict::Denied;
        }
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if cache.len() >= CACHE_MAX {
            cache.retain(|_, t| now.duration_since(*t) < CACHE_TTL);
            if cache.len() >= CACHE_MAX {
                if let Some(oldest) = cache
                    .iter()
                    .min_by_key(|(_, t)| **t)
                    .map(|(k, _)| k.clone())
                {
                    cache.remove(&oldest);
                }
            }
        }
        cache.insert(cache_key, now);
        Verdict::Allowed
    }

    fn cached(&self, key: &[u8]) -> bool {
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache.get(key).is_some_and(|t| t.elapsed() < CACHE_TTL)
    }
}

/// `Basic base64(user:password)` → (user, password). The user must be UTF-8 (it is a YAML key).
fn parse_basic(value: &[u8]) -> Option<(String, Vec<u8>)> {
    let value = std::str::from_utf8(value).ok()?.trim();
    let (scheme, credentials) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(credentials.trim())
        .ok()?;
    let colon = decoded.iter().position(|&b| b == b':')?;
    let user = String::from_utf8(decoded[..colon].to_vec()).ok()?;
    Some((user, decoded[colon + 1..].to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(user: &str, password: &str) -> Vec<u8> {
        let b64 = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        format!("Basic {b64}").into_bytes()
    }

    #[test]
    fn parses_basic_credentials() {
        assert_eq!(
            parse_basic(&header("u", "p:w")),
            Some(("u".into(), b"p:w".to_vec()))
        );
        assert_eq!(parse_basic(b"Bearer abc"), None);
        assert_eq!(parse_basic(b"Basic !!!"), None);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn right_password_only_and_cached() {
        let mut users = BTreeMap::new();
        users.insert("alice".to_owned(), bcrypt::hash("s3cret", 4).unwrap());
        let auth = BasicAuth::new(users, Duration::from_secs(10)).unwrap();
        assert_eq!(auth.check(None).await, Verdict::Denied);
        assert_eq!(
            auth.check(Some(&header("alice", "nope"))).await,
            Verdict::Denied
        );
        assert_eq!(
            auth.check(Some(&header("bob", "s3cret"))).await,
            Verdict::Denied
        );
        assert_eq!(
            auth.check(Some(&header("alice", "s3cret"))).await,
            Verdict::Allowed
        );
        assert_eq!(auth.cache.lock().unwrap().len(), 1);
        assert_eq!(
            auth.check(Some(&header("alice", "s3cret"))).await,
            Verdict::Allowed
        );
        assert_eq!(
            auth.check(Some(&header("alice", "s3cret2"))).await,
            Verdict::Denied
        );
    }
}
