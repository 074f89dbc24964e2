//! Start-up: open the store, read the whole state, and build the live
//! structures from it at the store's revision.

use std::collections::BTreeMap;
use std::time::Instant;

use crate::approval::ApprovalBook;
use crate::graph::TaskGraph;
use crate::registry::{Entry, RegistryChange};
use crate::store::{Loaded, Store, StoreError};

/// Reads the whole state of `store`, logging how long it took and how
/// many rows it read.
pub async fn load(store: &dyn Store) -> Result<Loaded, StoreError> {
    let started = Instant::now();
    let loaded = store.load().await?;
    tracing::info!(
        backend = store.backend(),
        tasks = loaded.tasks.len(),
        approvals = loaded.approvals.len(),
        registry = loaded.registry.len(),
        rows = loaded.rows(),
        revision = loaded.revision,
        elapsed_ms = started.elapsed().as_millis(),
        "state loaded from the store"
    );
    Ok(loaded)
}

/// The catalog's entries with the registry writes made through the API
/// on top: a stored entry replaces the catalog's, a stored removal drops
/// it.
pub fn overlay(catalog: Vec<Entry>, writes: &[RegistryChange]) -> Vec<Entry> {
    let mut entries: BTreeMap<_, _> = catalog
        .into_iter()
        .map(|e| ((e.kind(), e.id().to_owned()), e))
        .collect();
    for write in writes {
        let key = (write.kind, write.id.clone());
        match &write.entry {
            Some(entry) => entries.insert(key, entry.clone()),
            None => entries.remove(&key),
        };
    }
    entries.into_values().collect()
}

/// Puts the loaded tasks and approvals into the (empty) graph and book,
/// at the loaded revision.
pub fn fill(graph: &TaskGraph, approvals: &ApprovalBook, loaded: &Loaded) {
    graph.apply(&loaded.tasks, loaded.revision);
    approvals.apply(&loaded.approvals, loaded.revision);
}
