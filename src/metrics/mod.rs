//! Prometheus metrics, served as text at `/metrics`. Events on the request
//! paths (decisions, tokens, revocations, TLS handshake failures) count
//! into families here; what is already counted elsewhere (state revision,
//! pending approvals, policy reloads, the audit queue) is read at scrape
//! time by [`live::Live`], so those paths pay nothing.

mod live;

use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

pub use live::Live;

/// A label set of static names and values.
type Labels<const N: usize> = [(&'static str, &'static str); N];

/// Every metric of one server.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    decisions: Family<Labels<2>, Counter>,
    decision_latency: Histogram,
    tokens_issued: Counter,
    revocations: Family<Labels<1>, Counter>,
    handshake_failures: Family<Labels<1>, Counter>,
    webhook_failures: Family<Labels<1>, Counter>,
}

impl Metrics {
    /// The metrics of a server whose live state is `live`.
    pub fn new(live: Live) -> Self {
        let mut registry = Registry::default();
        let decisions = Family::<Labels<2>, Counter>::default();
        registry.register(
            "mandate_decisions",
            "Decisions by outcome (allow, deny, needs_approval) and first reason code",
            decisions.clone(),
        );
        // 1 µs to ~4 s: in-process decisions sit in the first buckets,
        // ones that wait for a blocked audit queue in the last.
        let decision_latency = Histogram::new(exponential_buckets(1e-6, 4.0, 12));
        registry.register_with_unit(
            "mandate_decision_latency",
            "Time spent deciding, from the request to the answer",
            Unit::Seconds,
            decision_latency.clone(),
        );
        let tokens_issued = Counter::default();
        registry.register(
            "mandate_tokens_issued",
            "Task tokens issued",
            tokens_issued.clone(),
        );
        let revocations = Family::<Labels<1>, Counter>::default();
        registry.register(
            "mandate_revocations",
            "Revocations by kind (task, agent, approval, trust_withdrawal); a task revocation counts once however large its subtree",
            revocations.clone(),
        );
        let handshake_failures = Family::<Labels<1>, Counter>::default();
        registry.register(
            "mandate_tls_handshake_failures",
            "TLS handshakes that failed, by reason",
            handshake_failures.clone(),
        );
        let webhook_failures = Family::<Labels<1>, Counter>::default();
        registry.register(
            "mandate_ui_webhook_failures",
            "Approval webhook calls that failed: `retried` per failed attempt, `dropped` per notification given up",
            webhook_failures.clone(),
        );
        registry.register_collector(Box::new(live));
        Self {
            registry,
            decisions,
            decision_latency,
            tokens_issued,
            revocations,
            handshake_failures,
            webhook_failures,
        }
    }

    /// One failed approval webhook call: `retried` or `dropped`.
    pub fn webhook_failed(&self, outcome: &'static str) {
        self.webhook_failures
            .get_or_create(&[("outcome", outcome)])
            .inc();
    }

    /// One decision: `decision` is `allow`, `deny` or `needs_approval`,
    /// `reason` its first reason code (`none` without one); `latency` is
    /// `None` for requests refused before deciding (Envoy's `no-route`).
    pub fn decision(
        &self,
        decision: &'static str,
        reason: &'static str,
        latency: Option<Duration>,
    ) {
        self.decisions
            .get_or_create(&[("decision", decision), ("reason", reason)])
            .inc();
        if let Some(latency) = latency {
            self.decision_latency.observe(latency.as_secs_f64());
        }
    }

    /// One task token issued.
    pub fn token_issued(&self) {
        self.tokens_issued.inc();
    }

    /// One revocation of `kind` (`task`, `agent`, `approval`,
    /// `trust_withdrawal`).
    pub fn revoked(&self, kind: &'static str) {
        self.revocations.get_or_create(&[("kind", kind)]).inc();
    }

    /// One failed TLS handshake.
    pub fn handshake_failed(&self, reason: &'static str) {
        self.handshake_failures
            .get_or_create(&[("reason", reason)])
            .inc();
    }

    /// The text exposition format.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

/// The reason label of a TLS handshake error.
pub fn handshake_reason(error: &std::io::Error) -> &'static str {
    let Some(tls) = error
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
    else {
        return match error.kind() {
            std::io::ErrorKind::UnexpectedEof => "eof",
            std::io::ErrorKind::InvalidData => "invalid_data",
            _ => "io",
        };
    };
    match tls {
        rustls::Error::NoCertificatesPresented => "no_client_certificate",
        rustls::Error::InvalidCertificate(_) => "invalid_certificate",
        rustls::Error::PeerIncompatible(_) => "peer_incompatible",
        rustls::Error::PeerMisbehaved(_) => "peer_misbehaved",
        rustls::Error::AlertReceived(_) => "alert_received",
        rustls::Error::InappropriateMessage { .. }
        | rustls::Error::InappropriateHandshakeMessage { .. }
        | rustls::Error::InvalidMessage(_) => "invalid_message",
        _ => "other",
    }
}
