//! Enforcement points' allowed `check` decisions, remembered for the policy
//! set and registry snapshot they were made with. An Envoy asks `check`
//! for the same (subject, resource) on every request it forwards; the
//! answer depends only on the policies, the registry and the request (no
//! time, no task), so it is evaluated once per policy set and registry
//! snapshot.

use std::collections::HashSet;
use std::sync::{Arc, RwLock};

use crate::policy::PolicyEngine;
use crate::registry::Snapshot;

/// Most remembered decisions; the cache is emptied when full.
const CAPACITY: usize = 10_000;

/// One `check` question.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct CheckKey {
    /// The enforcement point's SPIFFE ID.
    pub caller: String,
    /// The resource's type and id.
    pub resource: (String, String),
    /// The subject's SPIFFE ID.
    pub subject: String,
    /// Whether the subject's certificate was forwarded and verified.
    pub certificate_verified: bool,
}

#[derive(Debug, Default)]
struct Generation {
    engine: Option<Arc<PolicyEngine>>,
    registry: Option<Arc<Snapshot>>,
    allowed: HashSet<CheckKey>,
}

impl Generation {
    fn is(&self, engine: &Arc<PolicyEngine>, registry: &Arc<Snapshot>) -> bool {
        self.engine.as_ref().is_some_and(|e| Arc::ptr_eq(e, engine))
            && self
                .registry
                .as_ref()
                .is_some_and(|r| Arc::ptr_eq(r, registry))
    }
}

/// Allowed `check` decisions of the current policy set and registry.
#[derive(Debug, Default)]
pub(super) struct CheckCache {
    current: RwLock<Generation>,
}

impl CheckCache {
    /// Whether `key` was allowed under exactly this policy set and
    /// registry snapshot.
    // INVARIANT: only allows are remembered, and only for the very
    // instances they were decided with (held here, so their addresses are
    // not reused): a reload or a registry write is a new generation.
    pub fn allowed(
        &self,
        engine: &Arc<PolicyEngine>,
        registry: &Arc<Snapshot>,
        key: &CheckKey,
    ) -> bool {
        let current = self.current.read().unwrap_or_else(|e| e.into_inner());
        current.is(engine, registry) && current.allowed.contains(key)
    }

    /// Remembers that `key` was allowed.
    pub fn remember(&self, engine: &Arc<PolicyEngine>, registry: &Arc<Snapshot>, key: CheckKey) {
        let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
        if !current.is(engine, registry) || current.allowed.len() >= CAPACITY {
            *current = Generation {
                engine: Some(engine.clone()),
                registry: Some(registry.clone()),
                allowed: HashSet::new(),
            };
        }
        current.allowed.insert(key);
    }
}
