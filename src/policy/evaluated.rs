//! What one evaluation saw, kept so it can be shown and replayed.

use cedar_policy::{Entities, Request};

/// The Cedar request a decision evaluated and the entity slice it used:
/// what `mandate policy explain` shows and a decision record keeps, so the
/// decision can be replayed against another policy set.
#[derive(Debug, Clone)]
pub struct Evaluated {
    /// Principal, action, resource and the full context.
    pub request: Request,
    /// The entity slice.
    pub entities: Entities,
}
