//! Enforcement points' allowed `check` decisions, remembered for the policy
//! set and registry snapshot they were made with. An Envoy asks `check`
//! for the same (subject, resource) on every request it forwards; the
//! answer depends only on the policies, the registry and the request (no
//! time, no task), so it is evaluated once per policy set and registry
//! snapshot.

use std::sync::{Arc, Weak};
use std::time::Duration;

use crate::cache::Bounded;
use crate::policy::PolicyEngine;
use crate::registry::Snapshot;

/// Most remembered decisions; past it the coldest are dropped.
const CAPACITY: usize = 10_000;
/// How long an allowed `check` is remembered.
const MAX_AGE: Duration = Duration::from_secs(600);

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

/// The policy set and registry snapshot a `check` was allowed under.
/// Weak, so a remembered answer does not keep an old policy set alive;
/// the allocation stays while the entry does, so its address is not
/// reused by a newer one.
#[derive(Debug, Clone)]
struct Generation {
    engine: Weak<PolicyEngine>,
    registry: Weak<Snapshot>,
}

impl Generation {
    fn is(&self, engine: &Arc<PolicyEngine>, registry: &Arc<Snapshot>) -> bool {
        Weak::ptr_eq(&self.engine, &Arc::downgrade(engine))
            && Weak::ptr_eq(&self.registry, &Arc::downgrade(registry))
    }
}

/// Allowed `check` decisions, each with the generation it was made in.
#[derive(Debug)]
pub(super) struct CheckCache {
    allowed: Bounded<CheckKey, Generation>,
}

impl Default for CheckCache {
    fn default() -> Self {
        Self {
            allowed: Bounded::new(CAPACITY, MAX_AGE),
        }
    }
}

impl CheckCache {
    /// Whether `key` was allowed under exactly this policy set and
    /// registry snapshot.
    // INVARIANT: only allows are remembered, and only for the very
    // instances they were decided with: a reload or a registry write is a
    // new generation, and an answer of another generation is a miss.
    pub fn allowed(
        &self,
        engine: &Arc<PolicyEngine>,
        registry: &Arc<Snapshot>,
        key: &CheckKey,
    ) -> bool {
        self.allowed
            .get(key)
            .is_some_and(|generation| generation.is(engine, registry))
    }

    /// Remembers that `key` was allowed.
    pub fn remember(&self, engine: &Arc<PolicyEngine>, registry: &Arc<Snapshot>, key: CheckKey) {
        self.allowed.insert(
            key,
            Generation {
                engine: Arc::downgrade(engine),
                registry: Arc::downgrade(registry),
            },
        );
    }

    /// Drops answers past their age.
    pub fn sweep(&self) {
        self.allowed.sweep();
    }
}
