//! Enforcement-point mode of `Authorize` and Envoy's `Check`: a trusted
//! workload asks on behalf of a subject. The subject's trust domain must be
//! trusted, its forwarded SVID (when sent) must verify, and the caller must
//! be allowed `check` for it; then the subject is decided as the principal.

use std::sync::Arc;

use rustls_pki_types::UnixTime;
use spiffe::SpiffeId;

use super::authorization::{AuthorizationApi, Decided, Extras, View};
use super::check_cache::CheckKey;
use super::v1::{AuthorizeRequest, Subject};
use crate::decision::{DecisionRequest, Outcome, reason};
use crate::identity::TrustBundles;

/// The action an enforcement point needs to ask on behalf of a subject.
const CHECK_ACTION: &str = "check";

impl AuthorizationApi {
    /// Verifies a forwarded subject SVID against our bundles; returns the
    /// thumbprint of its leaf.
    fn verify_subject_certificate(
        &self,
        bundles: &Arc<TrustBundles>,
        subject: &Subject,
        expected: &SpiffeId,
    ) -> Result<String, String> {
        let verified =
            self.state
                .forwarded
                .verify(bundles, &subject.certificate_pem, UnixTime::now())?;
        if verified.spiffe_id != *expected {
            return Err(format!(
                "subject certificate is for `{}`, not `{expected}`",
                verified.spiffe_id
            ));
        }
        Ok(verified.thumbprint)
    }

    /// Enforcement-point mode: the subject's trust domain must be trusted,
    /// its certificate (when sent) must verify, the caller must be allowed
    /// `check` on the resource for this subject, and then the subject is the
    /// principal.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn decide_for_subject(
        &self,
        view: &View,
        caller: &SpiffeId,
        subject: &Subject,
        subject_id: &SpiffeId,
        request: &AuthorizeRequest,
        resource: &super::v1::Resource,
        extras: Extras,
    ) -> Decided {
        let bundles = self.state.identity.borrow().bundles.clone();
        if !bundles.trusts(subject_id.trust_domain()) {
            return Decided::early(Outcome::deny(
                reason::UNTRUSTED_SUBJECT,
                format!(
                    "subject trust domain `{}` is not trusted",
                    subject_id.trust_domain_name()
                ),
            ));
        }
        let subject_thumbprint = if subject.certificate_pem.is_empty() {
            None
        } else {
            match self.verify_subject_certificate(&bundles, subject, subject_id) {
                Ok(thumbprint) => Some(thumbprint),
                Err(error) => {
                    return Decided::early(Outcome::deny(
                        reason::SUBJECT_CERTIFICATE_INVALID,
                        error,
                    ));
                }
            }
        };
        let (engine, registry) = (&view.engine, &view.registry);
        let key = CheckKey {
            caller: caller.to_string(),
            resource: (resource.r#type.clone(), resource.id.clone()),
            subject: subject_id.to_string(),
            certificate_verified: subject_thumbprint.is_some(),
        };
        if !self.checks.allowed(engine, registry, &key) {
            let (check, check_evaluated) = self.state.decider.decide_explained(
                engine,
                registry,
                DecisionRequest::new(
                    caller,
                    CHECK_ACTION,
                    &resource.r#type,
                    &resource.id,
                    serde_json::json!({
                        "subject": {
                            "spiffe_id": subject_id.to_string(),
                            "trust_domain": subject_id.trust_domain_name(),
                            "path": subject_id.path(),
                            "certificate_verified": subject_thumbprint.is_some(),
                        }
                    }),
                ),
            );
            if !check.allowed {
                let mut outcome = check;
                outcome.reasons.insert(0, reason::NOT_AN_ENFORCEMENT_POINT);
                // The record keeps the `check` request: a policy change
                // that would let this enforcement point ask shows in a
                // replay.
                return Decided {
                    evaluated: check_evaluated,
                    ..Decided::early(outcome)
                };
            }
            self.checks.remember(engine, registry, key);
        }
        // A forwarded certificate binds the token; without one, a
        // forwarded hash of it may.
        let binding = subject_thumbprint.or_else(|| extras.subject_thumbprint.clone());
        self.state.decide_full(
            engine,
            registry,
            subject_id,
            binding.as_deref(),
            request,
            resource,
            extras,
        )
    }
}
