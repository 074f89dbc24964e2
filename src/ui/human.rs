//! Who the human is. Mandate does not authenticate people: it believes a
//! user id only from a front proxy (oauth2-proxy style) that proved itself
//! with a configured SVID over mTLS and passes the user in a configured
//! header, or, in the dev trust domain, from the loopback dev login, which
//! every page then announces. The principal of every Cedar decision made
//! for the page is the proxy (or the dev login's configured workload), as
//! for a front end calling `DecideApproval` over gRPC.

use std::sync::Arc;

use spiffe::SpiffeId;

use super::UiSettings;
use super::csrf::Keys;
use crate::api::https::HttpsPeer;
use crate::identity::TrustBundles;

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

/// The human behind a request on `peer` with `headers`, at `now`, with
/// `bundles` the newest trust bundles.
pub fn identify(
    settings: &UiSettings,
    keys: &Keys,
    peer: &HttpsPeer,
    headers: &http::HeaderMap,
    bundles: &Arc<TrustBundles>,
    now: i64,
) -> Result<Human, Refusal> {
    match &peer.svid {
        Some(svid) => {
            // A connection outlives its handshake: the SVID is checked
            // again (expiry, a withdrawn bundle, a replaced CA), as on the
            // gRPC port.
            svid.recheck(bundles, now).map_err(Refusal::NotAProxy)?;
            let id = &svid.spiffe_id;
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
    use arc_swap::ArcSwap;

    use super::*;
    use crate::api::PeerIdentity;
    use crate::identity::TrustDomain;
    use crate::identity::dev::DevTrustDomain;

    /// Real SVIDs of a dev trust domain: the front proxy's, another
    /// workload's, and the bundles they were accepted against.
    struct Fixture {
        _dir: tempfile::TempDir,
        bundles: Arc<TrustBundles>,
        proxy: PeerIdentity,
        other: PeerIdentity,
        now: i64,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let td = TrustDomain::new("td").unwrap();
        let dev = DevTrustDomain::init(dir.path(), &td, &[]).unwrap();
        let bundles = dev.files_source().load().unwrap().bundles.clone();
        let peer = |index: usize| {
            let chain = crate::identity::load_certs(&dev.samples[index].cert).unwrap();
            let (_, not_after) = crate::identity::validity_of(&chain[0]).unwrap();
            PeerIdentity {
                spiffe_id: crate::identity::spiffe_id_of_leaf(&chain[0]).unwrap(),
                certificates: Arc::new(chain),
                remote_addr: "10.0.0.1:1".parse().unwrap(),
                not_after,
                verified_against: Arc::new(ArcSwap::new(bundles.clone())),
            }
        };
        let (proxy, other) = (peer(0), peer(1));
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            .try_into()
            .unwrap();
        Fixture {
            _dir: dir,
            bundles,
            proxy,
            other,
            now,
        }
    }

    fn settings(dev_login: bool, proxy: &PeerIdentity) -> UiSettings {
        UiSettings {
            listen: "127.0.0.1:0".parse().unwrap(),
            proxies: vec![proxy.spiffe_id.clone()],
            user_header: "x-forwarded-user".into(),
            dev_login,
            dev_principal: Some(SpiffeId::new("spiffe://td/workloads/frontend").unwrap()),
            public_url: "https://ui".into(),
            webhook: None,
        }
    }

    fn peer(addr: &str, svid: Option<&PeerIdentity>) -> HttpsPeer {
        HttpsPeer {
            remote_addr: addr.parse().unwrap(),
            svid: svid.cloned(),
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
        let f = fixture();
        let s = settings(false, &f.proxy);
        let proxy = peer("10.0.0.1:1", Some(&f.proxy));
        let ok = identify(&s, &keys, &proxy, &user("carol"), &f.bundles, f.now).unwrap();
        assert_eq!((ok.user.as_str(), ok.dev), ("carol", false));
        assert_eq!(ok.principal, f.proxy.spiffe_id);
        let other = peer("10.0.0.1:1", Some(&f.other));
        let other = identify(&s, &keys, &other, &user("carol"), &f.bundles, f.now);
        assert!(matches!(other, Err(Refusal::NotAProxy(_))), "{other:?}");
        let headers = http::HeaderMap::new();
        let none = identify(&s, &keys, &proxy, &headers, &f.bundles, f.now);
        assert!(matches!(none, Err(Refusal::NoUser(_))), "{none:?}");
        let blank = identify(&s, &keys, &proxy, &user("a b"), &f.bundles, f.now);
        assert!(matches!(blank, Err(Refusal::NoUser(_))), "{blank:?}");
    }

    #[test]
    fn an_expired_proxy_svid_is_refused() {
        let keys = Keys::generate().unwrap();
        let f = fixture();
        let s = settings(false, &f.proxy);
        let proxy = peer("10.0.0.1:1", Some(&f.proxy));
        let at_expiry = f.proxy.not_after;
        let refused = identify(&s, &keys, &proxy, &user("carol"), &f.bundles, at_expiry);
        assert!(
            matches!(&refused, Err(Refusal::NotAProxy(why)) if why.contains("expired")),
            "{refused:?}"
        );
    }

    #[test]
    fn an_open_proxy_connection_is_refused_once_its_bundle_is_withdrawn_or_replaced() {
        let keys = Keys::generate().unwrap();
        let f = fixture();
        let s = settings(false, &f.proxy);
        let proxy = peer("10.0.0.1:1", Some(&f.proxy));
        let mut withdrawn = (*f.bundles).clone();
        withdrawn.retain(|_| false);
        let refused = identify(
            &s,
            &keys,
            &proxy,
            &user("carol"),
            &Arc::new(withdrawn),
            f.now,
        );
        assert!(
            matches!(&refused, Err(Refusal::NotAProxy(why)) if why.contains("no longer trusted")),
            "{refused:?}"
        );
        // The same trust domain under a new CA: the proxy's chain no longer
        // verifies.
        let dir = tempfile::tempdir().unwrap();
        let td = TrustDomain::new("td").unwrap();
        let replaced = DevTrustDomain::init(dir.path(), &td, &[]).unwrap();
        let replaced = replaced.files_source().load().unwrap().bundles.clone();
        let refused = identify(&s, &keys, &proxy, &user("carol"), &replaced, f.now);
        assert!(
            matches!(&refused, Err(Refusal::NotAProxy(why)) if why.contains("no longer verifies")),
            "{refused:?}"
        );
        // Back on the bundles it was accepted against, it is believed again.
        identify(&s, &keys, &proxy, &user("carol"), &f.bundles, f.now).unwrap();
    }

    #[test]
    fn the_dev_login_is_loopback_only_and_ignores_the_user_header() {
        let keys = Keys::generate().unwrap();
        let f = fixture();
        let s = settings(true, &f.proxy);
        let b = &f.bundles;
        let mut headers = user("carol");
        let local = peer("127.0.0.1:1", None);
        assert_eq!(
            identify(&s, &keys, &local, &headers, b, 0).unwrap_err(),
            Refusal::NeedsDevLogin
        );
        headers.insert(
            http::header::COOKIE,
            format!("a=b; {DEV_COOKIE}={}", keys.dev_cookie("alice"))
                .parse()
                .unwrap(),
        );
        let dev = identify(&s, &keys, &local, &headers, b, 0).unwrap();
        assert_eq!((dev.user.as_str(), dev.dev), ("alice", true));
        let remote = peer("192.168.1.2:1", None);
        assert_eq!(
            identify(&s, &keys, &remote, &headers, b, 0).unwrap_err(),
            Refusal::NotLoopback
        );
        let off = identify(&settings(false, &f.proxy), &keys, &local, &headers, b, 0);
        assert!(matches!(off, Err(Refusal::NotAProxy(_))), "{off:?}");
    }
}
