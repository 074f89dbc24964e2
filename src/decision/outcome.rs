//! What a decision answers: allow, deny or needs approval, each with its
//! grounds (the policies that determined it, errors, reasons).

use super::Reason;

/// Why a decision came out as it did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grounds {
    /// Ids of the policies that determined the decision.
    pub determining_policies: Vec<String>,
    /// Human-readable evaluation or request errors.
    pub errors: Vec<String>,
    /// Reason codes, the most telling first.
    pub reasons: Vec<Reason>,
}

impl Grounds {
    /// The reason codes, as clients see them.
    pub fn codes(&self) -> Vec<&'static str> {
        self.reasons.iter().map(|r| r.as_str()).collect()
    }
}

/// The three answers a decision can give.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Allowed.
    Allow(Grounds),
    /// Denied.
    Deny(Grounds),
    /// Denied only by policies an approval lifts, and allowed without
    /// them: denied until a human approves.
    NeedsApproval(Grounds),
}

impl Decision {
    /// A deny that never reached policy evaluation.
    pub fn deny(reason: Reason, error: impl Into<String>) -> Self {
        Self::Deny(Grounds {
            determining_policies: Vec::new(),
            errors: vec![error.into()],
            reasons: vec![reason],
        })
    }

    /// Whether the request is allowed.
    pub fn is_allowed(&self) -> bool {
        matches!(self, Self::Allow(_))
    }

    /// The decision's name in records, metrics and replies.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Allow(_) => "allow",
            Self::Deny(_) => "deny",
            Self::NeedsApproval(_) => "needs_approval",
        }
    }

    /// Why it came out so.
    pub fn grounds(&self) -> &Grounds {
        match self {
            Self::Allow(g) | Self::Deny(g) | Self::NeedsApproval(g) => g,
        }
    }

    /// The grounds, by value.
    pub fn into_grounds(self) -> Grounds {
        match self {
            Self::Allow(g) | Self::Deny(g) | Self::NeedsApproval(g) => g,
        }
    }

    /// The reason codes.
    pub fn reasons(&self) -> &[Reason] {
        &self.grounds().reasons
    }

    /// The most telling reason, if any: what metrics count and what decides
    /// how a refusal is answered.
    pub fn first_reason(&self) -> Option<Reason> {
        self.reasons().first().copied()
    }

    /// A "needs approval" that cannot be asked for becomes a plain deny for
    /// `reason`; any other decision is returned unchanged.
    pub fn refuse_approval(self, reason: Reason, error: impl Into<String>) -> Self {
        match self {
            Self::NeedsApproval(mut grounds) => {
                grounds.reasons.retain(|r| *r != Reason::NeedsApproval);
                grounds.reasons.push(reason);
                grounds.errors.push(error.into());
                Self::Deny(grounds)
            }
            other => other,
        }
    }

    /// Settles a "needs approval" for a call that has a task (`has_task`)
    /// and whose current approval is a denial (`approval_denied`): without
    /// a task there is nothing to hold an approval, and after a human's no
    /// there is nothing to ask.
    pub fn settle_approval(self, has_task: bool, approval_denied: bool) -> Self {
        if !matches!(self, Self::NeedsApproval(_)) {
            self
        } else if !has_task {
            self.refuse_approval(
                Reason::ApprovalNeedsTask,
                "an approval would allow this, but approvals are given to a task: call with a task token",
            )
        } else if approval_denied {
            self.refuse_approval(
                Reason::ApprovalDenied,
                "the approver denied this task's request for this action on this resource",
            )
        } else {
            self
        }
    }

    /// This decision with `reason` put first: the record of a refused
    /// sub-question (an enforcement point's `check`) says why it mattered.
    pub fn led_by(self, reason: Reason) -> Self {
        match self {
            Self::Allow(mut g) => {
                g.reasons.insert(0, reason);
                Self::Allow(g)
            }
            Self::Deny(mut g) | Self::NeedsApproval(mut g) => {
                g.reasons.insert(0, reason);
                Self::Deny(g)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn needs() -> Decision {
        Decision::NeedsApproval(Grounds {
            determining_policies: vec!["approval".to_owned()],
            errors: Vec::new(),
            reasons: vec![Reason::ForbiddenByPolicy, Reason::NeedsApproval],
        })
    }

    #[test]
    fn refusing_an_approval_is_a_deny_without_needs_approval() {
        let refused = needs().refuse_approval(Reason::ApprovalNotRequested, "full");
        assert_eq!(refused.name(), "deny");
        assert_eq!(
            refused.reasons(),
            [Reason::ForbiddenByPolicy, Reason::ApprovalNotRequested]
        );
        assert_eq!(refused.grounds().errors, ["full"]);
        let allow = Decision::Allow(Grounds::default());
        assert_eq!(allow.clone().refuse_approval(Reason::NoPermit, "x"), allow);
    }

    #[test]
    fn settling_needs_a_task_and_no_denial() {
        assert_eq!(
            needs().settle_approval(false, false).reasons().last(),
            Some(&Reason::ApprovalNeedsTask)
        );
        assert_eq!(
            needs().settle_approval(true, true).reasons().last(),
            Some(&Reason::ApprovalDenied)
        );
        assert_eq!(needs().settle_approval(true, false), needs());
    }

    #[test]
    fn a_leading_reason_makes_a_refusal_a_deny() {
        let led = needs().led_by(Reason::NotAnEnforcementPoint);
        assert_eq!(led.name(), "deny");
        assert_eq!(led.first_reason(), Some(Reason::NotAnEnforcementPoint));
    }
}
