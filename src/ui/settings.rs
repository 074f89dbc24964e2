//! What the `[ui]` table resolves to.

use std::net::SocketAddr;
use std::time::Duration;

use spiffe::SpiffeId;

/// The UI's settings, validated by `crate::config`.
#[derive(Debug, Clone)]
pub struct UiSettings {
    /// Where the UI listens (TLS).
    pub listen: SocketAddr,
    /// Front proxies whose user header is believed, by SPIFFE ID.
    pub proxies: Vec<SpiffeId>,
    /// The request header that carries the user id (lowercase).
    pub user_header: String,
    /// The loopback dev login (dev trust domain only), acting as
    /// `dev_principal`.
    pub dev_login: bool,
    /// The principal of Cedar decisions made for a dev login.
    pub dev_principal: Option<SpiffeId>,
    /// The page's address as browsers reach it (through the proxy), for
    /// links in notifications.
    pub public_url: String,
    /// Called when an approval is requested.
    pub webhook: Option<WebhookSettings>,
}

/// The approval webhook.
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    /// Where the JSON is POSTed (`http://` or `https://`).
    pub url: String,
    /// Most attempts per approval, the first included.
    pub attempts: usize,
    /// Wait before the first retry; doubled after each.
    pub first_backoff: Duration,
    /// One attempt taking longer fails.
    pub timeout: Duration,
    /// How often the approvals are looked at for new requests.
    pub poll: Duration,
}

/// How often the webhook looks for new approval requests.
pub const WEBHOOK_POLL: Duration = Duration::from_millis(500);
