//! `[ui]`: the approvals inbox and trail pages (off unless `listen` is
//! set, here or by `--ui-listen`), who may name the user (front proxies by
//! SPIFFE ID, or the dev login), and the approvals webhook (`[ui.webhook]`).

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use spiffe::SpiffeId;

use super::ConfigErrors;
use super::reference::{Section, example, key};
use crate::identity::IdentitySource;
use crate::ui::settings::WEBHOOK_POLL;
use crate::ui::{UiSettings, WebhookSettings};

/// The `[ui]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UiConfig {
    /// TLS listen address of the pages; the UI is off without it.
    pub listen: Option<String>,
    /// SPIFFE IDs of the front proxies whose user header is believed.
    pub proxies: Vec<String>,
    /// The header the proxies put the user id in.
    pub user_header: String,
    /// A loopback dev login (dev trust domain only).
    pub dev_login: bool,
    /// The principal of decisions made for a dev login.
    pub dev_principal: Option<String>,
    /// The pages' address as browsers reach them, for webhook links.
    pub public_url: Option<String>,
    /// The approvals webhook.
    pub webhook: Option<WebhookConfig>,
}

impl Default for UiConfig {
    fn default() -> Self {
        Self {
            listen: None,
            proxies: Vec::new(),
            // The header oauth2-proxy sets.
            user_header: "x-forwarded-user".to_owned(),
            dev_login: false,
            dev_principal: None,
            public_url: None,
            webhook: None,
        }
    }
}

/// The `[ui.webhook]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookConfig {
    /// Where the JSON is POSTed.
    pub url: Option<String>,
    /// Most attempts per approval, the first included.
    pub attempts: usize,
    /// Wait before the first retry, doubled after each, ms.
    pub backoff_ms: u64,
    /// One attempt taking longer fails, ms.
    pub timeout_ms: u64,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            url: None,
            attempts: 5,
            backoff_ms: 500,
            timeout_ms: 5000,
        }
    }
}

impl UiConfig {
    /// The settings, or `None` when the UI is off; problems pushed.
    pub(super) fn validate(
        &self,
        identity: Option<&IdentitySource>,
        problems: &mut ConfigErrors,
    ) -> Option<UiSettings> {
        let listen = self.listen.as_deref()?;
        let listen: SocketAddr = match listen.parse() {
            Ok(addr) => addr,
            Err(e) => {
                problems.bad(
                    "ui.listen",
                    listen,
                    format!("is not an address like 127.0.0.1:7444: {e}"),
                );
                return None;
            }
        };
        let mut proxies = Vec::new();
        for id in &self.proxies {
            match SpiffeId::new(id) {
                Ok(id) => proxies.push(id),
                Err(e) => problems.bad("ui.proxies", id, format!("is not a SPIFFE ID: {e}")),
            }
        }
        let user_header = self.user_header.to_ascii_lowercase();
        if http::HeaderName::from_bytes(user_header.as_bytes()).is_err() {
            problems.bad("ui.user_header", &user_header, "is not a header name");
        }
        let dev_login = self.dev_login;
        let dev_td = match identity {
            Some(IdentitySource::Dev { trust_domain, .. }) => Some(trust_domain.clone()),
            _ => None,
        };
        let mut dev_principal = None;
        if dev_login {
            // INVARIANT: nobody is authenticated by the dev login, so it
            // exists only where nothing real is at stake.
            match &dev_td {
                None => problems.key(
                    "ui.dev_login",
                    "is for the dev trust domain only (`identity.source = \"dev\"`); put a front proxy in `ui.proxies` instead",
                ),
                Some(td) => {
                    let id = self
                        .dev_principal
                        .clone()
                        .unwrap_or_else(|| format!("spiffe://{td}/workloads/frontend"));
                    match SpiffeId::new(&id) {
                        Ok(id) if id.trust_domain() == td => dev_principal = Some(id),
                        _ => problems.bad(
                            "ui.dev_principal",
                            &id,
                            format!("must be a SPIFFE ID of the dev trust domain `{td}`"),
                        ),
                    }
                }
            }
            if !listen.ip().is_loopback() {
                problems.key(
                    "ui.dev_login",
                    format!("needs a loopback `ui.listen`, not `{listen}`"),
                );
            }
        }
        if proxies.is_empty() && !dev_login {
            problems.key(
                "ui.proxies",
                "is empty and `ui.dev_login` is off: nobody could sign in",
            );
        }
        let public_url = self
            .public_url
            .clone()
            .unwrap_or_else(|| format!("https://{listen}"));
        if !public_url.starts_with("https://") && !public_url.starts_with("http://") {
            problems.bad("ui.public_url", &public_url, "must be an http(s) URL");
        }
        let webhook = self.webhook.as_ref().and_then(|w| w.validate(problems));
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

impl WebhookConfig {
    fn validate(&self, problems: &mut ConfigErrors) -> Option<WebhookSettings> {
        let Some(url) = self.url.clone() else {
            problems.key("ui.webhook.url", "is needed by `[ui.webhook]`");
            return None;
        };
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            problems.bad("ui.webhook.url", &url, "must be an http(s) URL");
        }
        if !(1..=20).contains(&self.attempts) {
            problems.bad("ui.webhook.attempts", self.attempts, "must be 1 to 20");
        }
        problems.at_least_one("ui.webhook.backoff_ms", self.backoff_ms);
        problems.at_least_one("ui.webhook.timeout_ms", self.timeout_ms);
        Some(WebhookSettings {
            url,
            attempts: self.attempts,
            first_backoff: Duration::from_millis(self.backoff_ms),
            timeout: Duration::from_millis(self.timeout_ms),
            poll: WEBHOOK_POLL,
        })
    }
}

pub(super) const SECTION: Section = Section {
    name: "ui",
    doc: "The approvals inbox and the delegation-trail pages for people (docs/ui.md),\noff unless `listen` is set (or `--ui-listen`). TLS with our SVID and the gRPC\nport's SPIFFE client-certificate checks: browsers reach it through the\norganisation's SSO proxy, which proves itself with its SVID and names the\nuser in `user_header`.",
    optional: false,
    keys: &[
        example(
            "listen",
            "The pages' TLS listen address.",
            "\"127.0.0.1:7444\"",
        ),
        key(
            "proxies",
            "SPIFFE IDs of the front proxies whose user header is believed, e.g.\n[\"spiffe://acme.org/oauth2-proxy\"].",
        ),
        key("user_header", "Where the proxies put the user id."),
        key(
            "dev_login",
            "The dev trust domain only, loopback listen only: a login form nobody checks.",
        ),
        example(
            "dev_principal",
            "Who decides for a dev login (default: spiffe://DEV_TRUST_DOMAIN/workloads/frontend).",
            "\"spiffe://mandate.local/workloads/frontend\"",
        ),
        example(
            "public_url",
            "The pages as browsers reach them, for webhook links (default: https://LISTEN).",
            "\"https://approvals.acme.org\"",
        ),
    ],
};

pub(super) const WEBHOOK: Section = Section {
    name: "ui.webhook",
    doc: "Called when an approval is requested: a POST of JSON (approval_id, url,\nsummary, agent, action, resource, sensitivity, labels, task_id, intent,\non_behalf_of), retried with exponential back-off; failures are counted in\nmandate_ui_webhook_failures_total on /metrics.",
    optional: true,
    keys: &[
        example(
            "url",
            "Where the JSON is POSTed.",
            "\"https://chat.example/hooks/approvals\"",
        ),
        example("attempts", "Attempts, the first included (1 to 20).", "5"),
        example(
            "backoff_ms",
            "Before the first retry, doubled after each.",
            "500",
        ),
        example("timeout_ms", "Per attempt.", "5000"),
    ],
};

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
        let mut problems = ConfigErrors::default();
        assert!(UiConfig::default().validate(None, &mut problems).is_none());
        assert!(problems.is_empty());
    }

    #[test]
    fn a_proxy_and_its_header() {
        let mut problems = ConfigErrors::default();
        let ui = UiConfig {
            listen: Some("0.0.0.0:7444".into()),
            proxies: vec!["spiffe://acme.org/oauth2-proxy".into()],
            user_header: "X-Auth-Request-User".into(),
            ..UiConfig::default()
        }
        .validate(None, &mut problems)
        .unwrap();
        assert!(problems.is_empty(), "{problems}");
        assert_eq!(ui.user_header, "x-auth-request-user");
        assert_eq!(ui.public_url, "https://0.0.0.0:7444");
    }

    #[test]
    fn the_dev_login_only_in_the_dev_trust_domain_on_loopback() {
        let raw = |listen: &str| UiConfig {
            listen: Some(listen.into()),
            dev_login: true,
            ..UiConfig::default()
        };
        let mut problems = ConfigErrors::default();
        let ui = raw("127.0.0.1:7444")
            .validate(Some(&dev()), &mut problems)
            .unwrap();
        assert!(problems.is_empty(), "{problems}");
        assert_eq!(
            ui.dev_principal.unwrap().to_string(),
            "spiffe://mandate.local/workloads/frontend"
        );
        raw("0.0.0.0:7444").validate(Some(&dev()), &mut problems);
        assert!(
            problems.lines().iter().any(|p| p.contains("loopback")),
            "{problems}"
        );
        let mut problems = ConfigErrors::default();
        raw("127.0.0.1:7444").validate(None, &mut problems);
        assert!(
            problems
                .lines()
                .iter()
                .any(|p| p.contains("dev trust domain")),
            "{problems}"
        );
    }

    #[test]
    fn nobody_could_sign_in_and_bad_webhooks_are_refused() {
        let mut problems = ConfigErrors::default();
        UiConfig {
            listen: Some("127.0.0.1:7444".into()),
            webhook: Some(WebhookConfig {
                url: Some("ftp://x".into()),
                attempts: 0,
                ..WebhookConfig::default()
            }),
            ..UiConfig::default()
        }
        .validate(None, &mut problems);
        assert_eq!(problems.0.len(), 3, "{problems}");
    }
}
