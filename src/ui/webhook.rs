//! The approvals webhook: when an approval is requested, POST a JSON
//! summary with a link to its page, retried with exponential back-off;
//! failed attempts and given-up notifications are counted in `/metrics`.
//!
//! New requests are found by watching the approval book rather than by a
//! hook in every path that can ask (the decision runner, `RequestApproval`):
//! approval ids are UUIDv7, so "after the last id seen" is exactly the new
//! ones. Approvals already pending when the server starts are not sent
//! again; each replica with a webhook sends the requests it learns of.

use std::sync::Arc;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use tokio::task::JoinHandle;

use super::{UiError, UiParts, UiSettings, WebhookSettings};
use crate::approval::{Approval, ApprovalFilter, ApprovalState};

/// Why one attempt failed.
#[derive(Debug, thiserror::Error)]
enum SendError {
    #[error("{0}")]
    Http(#[from] reqwest::Error),
    #[error("the webhook answered {0}")]
    Status(reqwest::StatusCode),
}

impl SendError {
    /// A 4xx other than 408 and 429 will not get better by asking again.
    fn retryable(&self) -> bool {
        match self {
            Self::Http(_) => true,
            Self::Status(s) => !s.is_client_error() || s.as_u16() == 408 || s.as_u16() == 429,
        }
    }
}

/// Starts the notifier.
pub fn start(
    hook: WebhookSettings,
    settings: &UiSettings,
    parts: UiParts,
) -> Result<JoinHandle<()>, UiError> {
    let client = reqwest::Client::builder()
        .timeout(hook.timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| UiError::Webhook(e.to_string()))?;
    let public_url = settings.public_url.trim_end_matches('/').to_owned();
    let pending = ApprovalFilter {
        state: Some(ApprovalState::Pending),
        ..ApprovalFilter::default()
    };
    // Everything asked before start is the inbox's, not news.
    let mut last_seen = last_id(&parts, &pending);
    let hook = Arc::new(hook);
    Ok(tokio::spawn(async move {
        let mut revision = parts.revision.current();
        let mut tick = tokio::time::interval(hook.poll);
        loop {
            tick.tick().await;
            let now = parts.revision.current();
            if now == revision {
                continue;
            }
            revision = now;
            loop {
                let page = parts.book.list(&pending, last_seen.as_deref(), 100);
                let Some(last) = page.last() else {
                    break;
                };
                last_seen = Some(last.id.clone());
                for approval in page {
                    let body = summary(&parts, &public_url, &approval);
                    tokio::spawn(send(
                        client.clone(),
                        hook.clone(),
                        body,
                        approval.id,
                        parts.metrics.clone(),
                    ));
                }
            }
        }
    }))
}

fn last_id(parts: &UiParts, filter: &ApprovalFilter) -> Option<String> {
    let mut last = None;
    loop {
        let page = parts.book.list(filter, last.as_deref(), 1000);
        match page.last() {
            Some(a) => last = Some(a.id.clone()),
            None => return last,
        }
    }
}

/// The JSON body: what the inbox shows of the approval. No tokens, no
/// checksums.
fn summary(parts: &UiParts, public_url: &str, a: &Approval) -> String {
    let task = parts.graph.get(&a.subject.task_id);
    let (sensitivity, labels) = super::resource_facts(&parts.registry, &a.subject.resource_id);
    let intent = task.as_ref().map(|t| t.intent.clone()).unwrap_or_default();
    let user = task
        .as_ref()
        .map(|t| t.originator.clone())
        .unwrap_or_default();
    let text = format!(
        "{} wants to {} {} for {}: {}",
        a.requested_by, a.subject.action, a.subject.resource_id, user, intent
    );
    serde_json::json!({
        "approval_id": a.id,
        "url": format!(
            "{public_url}/approvals/{}",
            super::path_segment(&a.id)
        ),
        "summary": text,
        "agent": a.requested_by,
        "action": a.subject.action,
        "resource": a.subject.resource_id,
        "sensitivity": sensitivity,
        "labels": labels,
        "task_id": a.subject.task_id,
        "intent": intent,
        "on_behalf_of": user,
        "justification": a.justification,
        "requested_at": a.requested_at,
    })
    .to_string()
}

async fn send(
    client: reqwest::Client,
    hook: Arc<WebhookSettings>,
    body: String,
    approval_id: String,
    metrics: Option<Arc<crate::metrics::Metrics>>,
) {
    let attempt = || async {
        let response = client
            .post(&hook.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.clone())
            .send()
            .await?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(SendError::Status(response.status()))
        }
    };
    let backoff = ExponentialBuilder::default()
        .with_min_delay(hook.first_backoff)
        .with_max_delay(Duration::from_secs(60))
        .with_max_times(hook.attempts.saturating_sub(1))
        .with_jitter();
    let result = attempt
        .retry(backoff)
        .when(SendError::retryable)
        .notify(|error, wait| {
            tracing::warn!(%approval_id, %error, ?wait, "approval webhook failed; retrying");
            if let Some(m) = &metrics {
                m.webhook_failed("retried");
            }
        })
        .await;
    match result {
        Ok(()) => tracing::info!(%approval_id, "approval webhook sent"),
        Err(error) => {
            tracing::error!(%approval_id, %error, "approval webhook gave up");
            if let Some(m) = &metrics {
                m.webhook_failed("dropped");
            }
        }
    }
}
