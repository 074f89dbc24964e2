//! Who the human is. Mandate does not authenticate people: it believes a
//! user id only from a front proxy (oauth2-proxy style) that proved itself
//! with a configured SVID over mTLS and passes the user in a configured
//! header, or, in the dev trust domain, from the loopback dev login, which
//! every page then announces. The principal of every Cedar decision made
//! for the page is the proxy (or the dev login's configured workload), as
//! for a front end calling `DecideApproval` over gRPC.

use spiffe::SpiffeId;

use super::UiSettings;
use super::csrf::Keys;
use super::listener::UiPeer;

/// The dev login's cookie.
pub const DEV_COOKIE: &str = "mandate_dev_user";
/// Longest user id believed.
const MAX_USER_LEN: usize = 256;

/// A human and the workload through which they reach us.
#[derive(Debug, Clone)]
pub struct Human {
    /// The user id, as the proxy or the dev login said.
    pub user: String,
    /// The principal of Cedar decisions on their behalf.
    pub principal: SpiffeId,
    /// Whether this is the dev login (announced on every page).
    pub dev: bool,
}

/// Why a request has no human behind it.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// A client SVID that is not a configured front proxy, or expired.
    NotAProxy(String),
    /// A front proxy that did not say who the user is.
    NoUser(String),
    /// No client certificate and no dev login (yet).
    NeedsDevLogin,
    /// No client certificate, from elsewhere than loopback.
    NotLoopback,
}

/// A user id we are willing to carry into policy and logs.
pub fn valid_user(user: &str) -> bool {
    !user.is_empty()
        && user.len() <= MAX_USER_LEN
        && user.chars().all(|c| !c.is_control() && !c.is_whitespace())
}

/// The human behind a request on `peer` with `headers`, at `now`.
pub fn identify(
    settings: &UiSettings,
    keys: &Keys,
    peer: &UiPeer,
    headers: &http::HeaderMap,
    now: i64,
) -> Result<Human, Refusal> {
    match &peer.svid {
        Some((id, not_after)) => {
            // A connection outlives its handshake: the SVID is checked again.
            if *not_after < now {
                return Err(Refusal::NotAProxy(format!(
                    "the SVID of `{id}` has expired"
                )));
            }
            if !settings.proxies.contains(id) {
                return Err(Refusal::NotAProxy(format!(
                    "`{id}` is not a configured front proxy (`ui.proxies`)"
                )));
            }
            let user = headers
                .get(settings.user_header.as_str())
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
                .filter(|u| valid_user(u))
                .ok_or_else(|| {
                    Refusal::NoUser(format!(
                        "the front proxy `{id}` sent no valid user in `{}`",
                        settings.user_header
                    ))
                })?;
            Ok(Human {
                user: user.to_owned(),
                principal: id.clone(),
                dev: false,
            })
        }
        None => {
            // INVARIANT: the listener accepts connections without a client
            // certificate only with the dev login on, and only loopback
            // ones get that far.
            let principal = match (&settings.dev_principal, settings.dev_login) {
                (Some(principal), true) => principal,
                _ => return Err(Refusal::NotAProxy("no client certificate".to_owned())),
            };
            if !peer.remote_addr.ip().is_loopback() {
                return Err(Refusal::NotLoopback);
            }
            let user = dev_cookie(headers)
                .and_then(|value| keys.dev_user(value))
                .ok_or(Refusal::NeedsDevLogin)?;
            Ok(Human {
                user,
                principal: principal.clone(),
                dev: true,
            })
        }
    }
}

fn dev_cookie(headers: &http::HeaderMap) -> Option<&str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == DEV_COOKIE)
        .map(|(_, value)| value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(dev_login: bool) -> UiSettings {
        UiSettings {
            listen: "127.0.0.1:0".parse().unwrap(),
            proxies: vec![SpiffeId::new("spiffe://td/proxy").unwrap()],
            user_header: "x-forwarded-user".into(),
            dev_login,
            dev_principal: Some(SpiffeId::new("spiffe://td/workloads/frontend").unwrap()),
            public_url: "https://ui".into(),
            webhook: None,
        }
    }

    fn peer(addr: &str, id: Option<&str>) -> UiPeer {
        UiPeer {
            remote_addr: addr.parse().unwrap(),
            svid: id.map(|id| (SpiffeId::new(id).unwrap(), i64::MAX)),
        }
    }

    fn user(value: &str) -> http::HeaderMap {
        let mut headers = http::HeaderMap::new();
        headers.insert("x-forwarded-user", value.parse().unwrap());
        headers
    }

    #[test]
    fn only_a_configured_proxy_names_the_user() {
        let keys = Keys::generate().unwrap();
        let s = settings(false);
        let ok = identify(
            &s,
            &keys,
            &peer("10.0.0.1:1", Some("spiffe://td/proxy")),
            &user("carol"),
            0,
        )
        .unwrap();
        assert_eq!((ok.user.as_str(), ok.dev), ("carol", false));
        assert_eq!(ok.principal.to_string(), "spiffe://td/proxy");
        let other = identify(
            &s,
            &keys,
            &peer("10.0.0.1:1", Some("spiffe://td/agents/x")),
            &user("carol"),
            0,
        );
        assert!(matches!(other, Err(Refusal::NotAProxy(_))), "{other:?}");
        let none = identify(
            &s,
            &keys,
            &peer("10.0.0.1:1", Some("spiffe://td/proxy")),
            &http::HeaderMap::new(),
            0,
        );
        assert!(matches!(none, Err(Refusal::NoUser(_))), "{none:?}");
        let blank = identify(
            &s,
            &keys,
            &peer("10.0.0.1:1", Some("spiffe://td/proxy")),
            &user("a b"),
            0,
        );
        assert!(matches!(blank, Err(Refusal::NoUser(_))), "{blank:?}");
    }

    #[test]
    fn an_expired_proxy_svid_is_refused() {
        let keys = Keys::generate().unwrap();
        let mut p = peer("10.0.0.1:1", Some("spiffe://td/proxy"));
        p.svid = p.svid.map(|(id, _)| (id, 10));
        let refused = identify(&settings(false), &keys, &p, &user("carol"), 11);
        assert!(matches!(refused, Err(Refusal::NotAProxy(_))), "{refused:?}");
    }

    #[test]
    fn the_dev_login_is_loopback_only_and_ignores_the_user_header() {
        let keys = Keys::generate().unwrap();
        let s = settings(true);
        let mut headers = user("carol");
        assert_eq!(
            identify(&s, &keys, &peer("127.0.0.1:1", None), &headers, 0).unwrap_err(),
            Refusal::NeedsDevLogin
        );
        headers.insert(
            http::header::COOKIE,
            format!("a=b; {DEV_COOKIE}={}", keys.dev_cookie("alice"))
                .parse()
                .unwrap(),
        );
        let dev = identify(&s, &keys, &peer("127.0.0.1:1", None), &headers, 0).unwrap();
        assert_eq!((dev.user.as_str(), dev.dev), ("alice", true));
        assert_eq!(
            identify(&s, &keys, &peer("192.168.1.2:1", None), &headers, 0).unwrap_err(),
            Refusal::NotLoopback
        );
        let off = identify(
            &settings(false),
            &keys,
            &peer("127.0.0.1:1", None),
            &headers,
            0,
        );
        assert!(matches!(off, Err(Refusal::NotAProxy(_))), "{off:?}");
    }
}
