//! The `[ui]` table of `mandate.toml`: the approvals inbox and trail pages
//! (off unless `listen` is set, here or by `--ui-listen`), who may name
//! the user (front proxies by SPIFFE ID, or the dev login), and the
//! approvals webhook.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;
use spiffe::SpiffeId;

use crate::identity::IdentitySource;
use crate::ui::settings::defaults;
use crate::ui::{UiSettings, WebhookSettings};

/// The `[ui]` table.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUi {
    /// TLS listen address of the pages; the UI is off without it.
    pub listen: Option<String>,
    /// SPIFFE IDs of the front proxies whose user header is believed.
    pub proxies: Option<Vec<String>>,
    /// The header the proxies put the user id in.
    pub user_header: Option<String>,
    /// A loopback dev login (dev trust domain only).
    pub dev_login: Option<bool>,
    /// The principal of decisions made for a dev login.
    pub dev_principal: Option<String>,
    /// The pages' address as browsers reach them, for webhook links.
    pub public_url: Option<String>,
    /// The approvals webhook.
    pub webhook: Option<RawWebhook>,
}

/// The `[ui.webhook]` table.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWebhook {
    /// Where the JSON is POSTed.
    pub url: Option<String>,
    /// Most attempts per approval, the first included.
    pub attempts: Option<usize>,
    /// Wait before the first retry, doubled after each.
    pub backoff_ms: Option<u64>,
    /// One attempt taking longer fails.
    pub timeout_ms: Option<u64>,
}

impl RawUi {
    /// `self` with every unset key taken from `file`.
    pub fn or(self, file: Self) -> Self {
        Self {
            listen: self.listen.or(file.listen),
            proxies: self.proxies.or(file.proxies),
            user_header: self.user_header.or(file.user_header),
            dev_login: self.dev_login.or(file.dev_login),
            dev_principal: self.dev_principal.or(file.dev_principal),
            public_url: self.public_url.or(file.public_url),
            webhook: self.webhook.or(file.webhook),
        }
    }

    /// The settings, or `None` when the UI is off; problems pushed.
    pub fn resolve(
        self,
        identity: Option<&IdentitySource>,
        problems: &mut Vec<String>,
    ) -> Option<UiSettings> {
        let listen = self.listen?;
        let listen: SocketAddr = match listen.parse() {
            Ok(addr) => addr,
            Err(e) => {
                problems.push(format!(
                    "`ui.listen` `{listen}` is not an address like 127.0.0.1:7444: {e}"
                ));
                return None;
            }
        };
        let mut proxies = Vec::new();
        for id in self.proxies.unwrap_or_default() {
            match SpiffeId::new(&id) {
                Ok(id) => proxies.push(id),
                Err(e) => problems.push(format!("`ui.proxies`: `{id}` is not a SPIFFE ID: {e}")),
            }
        }
        let user_header = self
            .user_header
            .unwrap_or_else(|| defaults::USER_HEADER.to_owned())
            .to_ascii_lowercase();
        if http::HeaderName::from_bytes(user_header.as_bytes()).is_err() {
            problems.push(format!(
                "`ui.user_header` `{user_header}` is not a header name"
            ));
        }
        let dev_login = self.dev_login.unwrap_or(false);
        let dev_td = match identity {
            Some(IdentitySource::Dev { trust_domain, .. }) => Some(trust_domain.clone()),
            _ => None,
        };
        let mut dev_principal = None;
        if dev_login {
            // INVARIANT: nobody is authenticated by the dev login, so it
            // exists only where nothing real is at stake.
            match &dev_td {
                None => problems.push(
                    "`ui.dev_login` is for the dev trust domain only (`identity = \"dev\"`); put a front proxy in `ui.proxies` instead".to_owned(),
                ),
                Some(td) => {
                    let id = self
                        .dev_principal
                        .unwrap_or_else(|| format!("spiffe://{td}/workloads/frontend"));
                    match SpiffeId::new(&id) {
                        Ok(id) if id.trust_domain() == td => dev_principal = Some(id),
                        _ => problems.push(format!(
                            "`ui.dev_principal` `{id}` must be a SPIFFE ID of the dev trust domain `{td}`"
                        )),
                    }
                }
            }
            if !listen.ip().is_loopback() {
                problems.push(format!(
                    "`ui.dev_login` needs a loopback `ui.listen`, not `{listen}`"
                ));
            }
        }
        if proxies.is_empty() && !dev_login {
            problems
                .push("`ui` has no `proxies` and no `dev_login`: nobody could sign in".to_owned());
        }
        let public_url = self
            .public_url
            .unwrap_or_else(|| format!("https://{listen}"));
        if !public_url.starts_with("https://") && !public_url.starts_with("http://") {
            problems.push(format!(
                "`ui.public_url` `{public_url}` must be an http(s) URL"
            ));
        }
        let webhook = self.webhook.and_then(|w| w.resolve(problems));
        Some(UiSettings {
            listen,
            proxies,
            user_header,
            dev_login,
            dev_principal,
            public_url,
            webhook,
        })
    }
}

impl RawWebhook {
    fn resolve(self, problems: &mut Vec<String>) -> Option<WebhookSettings> {
        let Some(url) = self.url else {
            problems.push("`ui.webhook` needs a `url`".to_owned());
            return None;
        };
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            problems.push(format!("`ui.webhook.url` `{url}` must be an http(s) URL"));
        }
        let attempts = self.attempts.unwrap_or(defaults::WEBHOOK_ATTEMPTS);
        if !(1..=20).contains(&attempts) {
            problems.push(format!(
                "`ui.webhook.attempts` must be 1 to 20, not {attempts}"
            ));
        }
        let ms = |value: Option<u64>, default: u64, key: &str, problems: &mut Vec<String>| {
            let value = value.unwrap_or(default);
            if value == 0 {
                problems.push(format!("`ui.webhook.{key}` must be at least 1"));
            }
            Duration::from_millis(value)
        };
        Some(WebhookSettings {
            url,
            attempts,
            first_backoff: ms(
                self.backoff_ms,
                defaults::WEBHOOK_BACKOFF_MS,
                "backoff_ms",
                problems,
            ),
            timeout: ms(
                self.timeout_ms,
                defaults::WEBHOOK_TIMEOUT_MS,
                "timeout_ms",
                problems,
            ),
            poll: Duration::from_millis(defaults::WEBHOOK_POLL_MS),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev() -> IdentitySource {
        IdentitySource::Dev {
            dir: "d".into(),
            trust_domain: crate::identity::TrustDomain::new("mandate.local").unwrap(),
        }
    }

    #[test]
    fn off_without_listen() {
        let mut problems = Vec::new();
        assert!(RawUi::default().resolve(None, &mut problems).is_none());
        assert!(problems.is_empty());
    }

    #[test]
    fn a_proxy_and_its_header() {
        let mut problems = Vec::new();
        let ui = RawUi {
            listen: Some("0.0.0.0:7444".into()),
            proxies: Some(vec!["spiffe://acme.org/oauth2-proxy".into()]),
            user_header: Some("X-Auth-Request-User".into()),
            ..RawUi::default()
        }
        .resolve(None, &mut problems)
        .unwrap();
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(ui.user_header, "x-auth-request-user");
        assert_eq!(ui.public_url, "https://0.0.0.0:7444");
    }

    #[test]
    fn the_dev_login_only_in_the_dev_trust_domain_on_loopback() {
        let raw = |listen: &str| RawUi {
            listen: Some(listen.into()),
            dev_login: Some(true),
            ..RawUi::default()
        };
        let mut problems = Vec::new();
        let ui = raw("127.0.0.1:7444")
            .resolve(Some(&dev()), &mut problems)
            .unwrap();
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(
            ui.dev_principal.unwrap().to_string(),
            "spiffe://mandate.local/workloads/frontend"
        );
        raw("0.0.0.0:7444").resolve(Some(&dev()), &mut problems);
        assert!(
            problems.iter().any(|p| p.contains("loopback")),
            "{problems:?}"
        );
        let mut problems = Vec::new();
        raw("127.0.0.1:7444").resolve(None, &mut problems);
        assert!(
            problems.iter().any(|p| p.contains("dev trust domain")),
            "{problems:?}"
        );
    }

    #[test]
    fn nobody_could_sign_in_and_bad_webhooks_are_refused() {
        let mut problems = Vec::new();
        RawUi {
            listen: Some("127.0.0.1:7444".into()),
            webhook: Some(RawWebhook {
                url: Some("ftp://x".into()),
                attempts: Some(0),
                ..RawWebhook::default()
            }),
            ..RawUi::default()
        }
        .resolve(None, &mut problems);
        assert_eq!(problems.len(), 3, "{problems:?}");
    }

    #[test]
    fn the_example_ui_tables_parse_and_resolve() {
        let example = include_str!("../../mandate.toml.example");
        let start = example.find("# [ui]\n").unwrap();
        let block = example[start..]
            .lines()
            .take_while(|l| l.starts_with('#'))
            .filter(|l| l.starts_with("# [") || l.contains(" = "))
            .map(|l| l.trim_start_matches("# "))
            .collect::<Vec<_>>()
            .join("\n");
        let raw: crate::config::RawConfig = toml::from_str(&block).unwrap();
        let mut problems = Vec::new();
        let ui = raw.ui.unwrap().resolve(None, &mut problems).unwrap();
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(ui.proxies.len(), 1);
        assert_eq!(ui.webhook.unwrap().attempts, 5);
    }
}
