//! Console sessions: an API key pasted once at sign-in becomes a random session token in an
//! `HttpOnly`, `SameSite=Strict` cookie (`Secure` when the public URL is https), valid for
//! [`LIFETIME`]. The browser never holds the key; this node holds only the key's id, a hash of
//! the token and the session's anti-CSRF token. Each request looks the key up again, so
//! revoking the key (or its expiry) ends its sessions at once.
//!
//! Sessions live in the node that made them: behind a load balancer, route the console to one
//! node or keep sessions sticky.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

/// The session cookie's name.
pub(crate) const COOKIE: &str = "airlock_session";
/// How long a session lasts from sign-in.
pub(crate) const LIFETIME: Duration = Duration::from_secs(8 * 3600);
/// The most sessions one node keeps; past it, sign-in is refused until some expire.
const MOST: usize = 10_000;

/// One signed-in browser.
#[derive(Debug, Clone)]
pub(crate) struct Session {
    /// The id of the key it signed in with.
    pub(crate) key: String,
    /// The anti-CSRF token every form of the session carries.
    pub(crate) csrf: String,
    expires: Instant,
}

impl Session {
    /// Whether `offered` is this session's anti-CSRF token (compared in constant time).
    pub(crate) fn csrf_matches(&self, offered: &str) -> bool {
        self.csrf.as_bytes().ct_eq(offered.as_bytes()).into()
    }
}

/// This node's sessions, by the hash of their token.
#[derive(Default)]
pub(crate) struct Sessions {
    live: Mutex<HashMap<[u8; 32], Session>>,
}

/// 256 random bits, in hex.
fn random_token() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

fn hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl Sessions {
    /// A new session for key `key`: its token (for the cookie only), or `None` when this node
    /// holds as many live sessions as it may.
    pub(crate) fn start(&self, key: &str) -> Option<String> {
        let mut live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        live.retain(|_, s| s.expires > now);
        if live.len() >= MOST {
            return None;
        }
        let token = random_token();
        live.insert(
            hash(&token),
            Session {
                key: key.to_string(),
                csrf: random_token(),
                expires: now + LIFETIME,
            },
        );
        Some(token)
    }

    /// The live session of `token`.
    pub(crate) fn get(&self, token: &str) -> Option<Session> {
        let mut live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
        let key = hash(token);
        match live.get(&key) {
            Some(session) if session.expires > Instant::now() => Some(session.clone()),
            Some(_) => {
                live.remove(&key);
                None
            }
            None => None,
        }
    }

    /// Ends the session of `token`.
    pub(crate) fn end(&self, token: &str) {
        self.live
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&hash(token));
    }
}

/// The session token a `Cookie` header carries, if any.
pub(crate) fn token_of(cookies: &str) -> Option<&str> {
    cookies
        .split(';')
        .filter_map(|c| c.trim().split_once('='))
        .find_map(|(name, value)| (name == COOKIE).then_some(value))
        .filter(|v| !v.is_empty())
}

/// The `Set-Cookie` value that keeps `token` (`None`: that clears it).
pub(crate) fn cookie(token: Option<&str>, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    match token {
        Some(token) => format!(
            "{COOKIE}={token}; Path=/console; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
            LIFETIME.as_secs()
        ),
        None => format!("{COOKIE}=; Path=/console; HttpOnly; SameSite=Strict; Max-Age=0{secure}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_is_found_by_its_token_only_and_ends() {
        let sessions = Sessions::default();
        let token = sessions.start("key-1").expect("room");
        let session = sessions.get(&token).expect("live");
        assert_eq!(session.key, "key-1");
        assert!(session.csrf_matches(&session.csrf.clone()));
        assert!(!session.csrf_matches("forged"));
        assert!(sessions.get("another").is_none());
        sessions.end(&token);
        assert!(sessions.get(&token).is_none());
    }

    #[test]
    fn the_cookie_is_http_only_strict_and_secure_on_https() {
        let set = cookie(Some("t0k"), true);
        for part in [
            "airlock_session=t0k",
            "HttpOnly",
            "SameSite=Strict",
            "Secure",
            "Path=/console",
        ] {
            assert!(set.contains(part), "{set}");
        }
        assert!(!cookie(Some("t0k"), false).contains("Secure"));
        assert!(cookie(None, false).contains("Max-Age=0"));
        assert_eq!(token_of("a=1; airlock_session=xyz; b=2"), Some("xyz"));
        assert_eq!(token_of("airlock_session="), None);
        assert_eq!(token_of("other=1"), None);
    }
}
