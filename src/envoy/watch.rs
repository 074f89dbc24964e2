//! The route map's file watch.

use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::RouteTable;
use crate::policy::PolicyStore;

/// Reloads the route map when its file changes: polled every `interval`,
/// taken once its content stayed the same for one more poll, so a file
/// being written is not read half-way.
pub async fn watch_routes(routes: Arc<RouteTable>, policies: Arc<PolicyStore>, interval: Duration) {
    let Some(path) = routes.path().map(ToOwned::to_owned) else {
        return;
    };
    // The content seen at the last poll, and the content last taken (good
    // or refused: a broken file is reported once, not every poll).
    let mut last: Option<[u8; 32]> = None;
    let mut taken: Option<[u8; 32]> = None;
    loop {
        tokio::time::sleep(interval).await;
        let path = path.clone();
        let Ok(now) = tokio::task::spawn_blocking(move || {
            std::fs::read(&path)
                .ok()
                .map(|bytes| <[u8; 32]>::from(Sha256::digest(bytes)))
        })
        .await
        else {
            continue;
        };
        if now.is_none() || now != last {
            last = now;
            continue;
        }
        if now == taken {
            continue;
        }
        taken = now;
        let (routes, policies) = (routes.clone(), policies.clone());
        // Unchanged content is a no-op by hash; the outcome is logged.
        let _ = tokio::task::spawn_blocking(move || routes.reload(&policies.current())).await;
    }
}
