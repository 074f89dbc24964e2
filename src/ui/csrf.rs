//! Keys the UI signs with, kept in memory for the life of the process:
//! CSRF tokens and the dev login's cookie.
//!
//! The proxy's session cookie goes with any request the browser sends, so
//! a page elsewhere could make the browser POST a decision. Every
//! state-changing request therefore carries a token only our own pages
//! hold: an HMAC of the user and the principal, which a forged request
//! cannot compute. Browsers that say where a request comes from
//! (`Sec-Fetch-Site`) must also say it comes from our own origin.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

/// The process's signing key.
#[derive(Debug)]
pub struct Keys {
    key: hmac::Key,
}

impl Keys {
    /// A fresh random key; restarting the server invalidates open pages'
    /// tokens and dev logins, which only costs a reload.
    pub fn generate() -> Result<Self, String> {
        let mut bytes = [0u8; 32];
        SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| "no randomness for the ui's key".to_owned())?;
        Ok(Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, &bytes),
        })
    }

    fn sign(&self, purpose: &str, parts: &[&str]) -> String {
        let mut context = hmac::Context::with_key(&self.key);
        context.update(purpose.as_bytes());
        for part in parts {
            context.update(&[0]);
            context.update(part.as_bytes());
        }
        URL_SAFE_NO_PAD.encode(context.sign().as_ref())
    }

    fn verify(&self, purpose: &str, parts: &[&str], tag: &str) -> bool {
        let Ok(tag) = URL_SAFE_NO_PAD.decode(tag) else {
            return false;
        };
        let mut message = purpose.as_bytes().to_vec();
        for part in parts {
            message.push(0);
            message.extend_from_slice(part.as_bytes());
        }
        hmac::verify(&self.key, &message, &tag).is_ok()
    }

    /// The CSRF token of forms shown to `user` through `principal`.
    pub fn csrf_token(&self, user: &str, principal: &str) -> String {
        self.sign("csrf", &[user, principal])
    }

    /// Whether `token` is the CSRF token of `user` through `principal`.
    pub fn csrf_ok(&self, user: &str, principal: &str, token: &str) -> bool {
        self.verify("csrf", &[user, principal], token)
    }

    /// The dev login cookie's value for `user`.
    pub fn dev_cookie(&self, user: &str) -> String {
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(user),
            self.sign("dev", &[user])
        )
    }

    /// The user of a dev login cookie value, if we signed it.
    pub fn dev_user(&self, cookie: &str) -> Option<String> {
        let (user, tag) = cookie.split_once('.')?;
        let user = String::from_utf8(URL_SAFE_NO_PAD.decode(user).ok()?).ok()?;
        self.verify("dev", &[&user], tag).then_some(user)
    }
}

/// Whether the browser's `Sec-Fetch-Site` (when it sends one) says the
/// request comes from our own pages.
pub fn same_site(headers: &http::HeaderMap) -> bool {
    match headers.get("sec-fetch-site") {
        None => true,
        Some(value) => matches!(value.as_bytes(), b"same-origin" | b"none"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_bound_to_the_user_and_the_principal() {
        let keys = Keys::generate().unwrap();
        let token = keys.csrf_token("carol", "spiffe://a/proxy");
        assert!(keys.csrf_ok("carol", "spiffe://a/proxy", &token));
        assert!(!keys.csrf_ok("bob", "spiffe://a/proxy", &token));
        assert!(!keys.csrf_ok("carol", "spiffe://a/other", &token));
        assert!(!keys.csrf_ok("carol", "spiffe://a/proxy", "forged"));
        let other = Keys::generate().unwrap();
        assert!(!other.csrf_ok("carol", "spiffe://a/proxy", &token));
    }

    #[test]
    fn dev_cookies_cannot_be_made_up() {
        let keys = Keys::generate().unwrap();
        let cookie = keys.dev_cookie("alice");
        assert_eq!(keys.dev_user(&cookie).as_deref(), Some("alice"));
        let (_, tag) = cookie.split_once('.').unwrap();
        let forged = format!("{}.{tag}", URL_SAFE_NO_PAD.encode("carol"));
        assert_eq!(keys.dev_user(&forged), None);
        assert_eq!(keys.dev_user("alice"), None);
    }

    #[test]
    fn cross_site_requests_are_refused() {
        let mut headers = http::HeaderMap::new();
        assert!(same_site(&headers));
        headers.insert("sec-fetch-site", "same-origin".parse().unwrap());
        assert!(same_site(&headers));
        headers.insert("sec-fetch-site", "cross-site".parse().unwrap());
        assert!(!same_site(&headers));
    }
}
