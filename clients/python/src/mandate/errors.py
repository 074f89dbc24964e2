"""Everything the library raises: one base class, `MandateError`.

A deny or a needs-approval answer is raised as `Denied` or `NeedsApproval`
by `Mandate.authorize` (use `Mandate.decide` for the answer without raising).
A gRPC call that fails raises a `RpcError` subclass named after its status
code, carrying the method and the server's message.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .types import Decision


class MandateError(Exception):
    """Base of every error this library raises."""


class ChecksumError(MandateError, ValueError):
    """Inputs that have no canonical JSON form (NaN, non-string keys, ...)."""


class IdentityError(MandateError):
    """The SVID or trust bundle could not be loaded or is not usable."""


class TokenError(MandateError):
    """A task token could not be obtained or read."""


class Denied(MandateError):
    """Mandate denied the call. `reasons` are machine-readable codes."""

    def __init__(self, decision: Decision, action: str, resource: str) -> None:
        self.decision = decision
        self.action = action
        self.resource = resource
        reasons = ", ".join(decision.reasons) or "no reason given"
        policies = ", ".join(decision.policies)
        super().__init__(
            f"mandate denied `{action}` on `{resource}`: {reasons}"
            + (f" (policies: {policies})" if policies else "")
            + f"; decision id {decision.decision_id}"
        )

    @property
    def reasons(self) -> tuple[str, ...]:
        return self.decision.reasons

    @property
    def decision_id(self) -> str:
        return self.decision.decision_id

    @property
    def policies(self) -> tuple[str, ...]:
        return self.decision.policies


class NeedsApproval(MandateError):
    """The call needs a human's approval first; it is denied until then.

    `approval_id` names the pending approval. `Mandate.authorize_with_approval`
    waits (bounded) for the decision and retries once it is approved.
    """

    def __init__(self, decision: Decision, action: str, resource: str) -> None:
        self.decision = decision
        self.action = action
        self.resource = resource
        super().__init__(
            f"mandate needs a human's approval for `{action}` on `{resource}`: "
            f"approval {decision.approval_id} is pending (decide it with "
            f"`mandate approval decide --approval {decision.approval_id}`); "
            f"decision id {decision.decision_id}"
        )

    @property
    def approval_id(self) -> str:
        return self.decision.approval_id

    @property
    def decision_id(self) -> str:
        return self.decision.decision_id


class ApprovalRefused(MandateError):
    """A human denied (or revoked) the approval a call waited for."""

    def __init__(self, approval_id: str, state: str, approver: str) -> None:
        self.approval_id = approval_id
        self.state = state
        self.approver = approver
        by = f" by `{approver}`" if approver else ""
        super().__init__(f"approval {approval_id} was {state}{by}; the call stays denied")


class ApprovalTimeout(MandateError):
    """No decision on an approval within the time given."""

    def __init__(self, approval_id: str, waited: float) -> None:
        self.approval_id = approval_id
        self.waited = waited
        super().__init__(
            f"approval {approval_id} is still pending after {waited:.1f} s; "
            "ask its approver to decide it, or wait longer (`timeout=`)"
        )


class RpcError(MandateError):
    """A call to Mandate's API failed; `code` is the gRPC status code name."""

    code = "UNKNOWN"

    def __init__(self, method: str, code: str, details: str) -> None:
        self.method = method
        self.code = code
        self.details = details
        super().__init__(f"{method} failed: {code}: {details or 'no details'}{_hint(code)}")


class InvalidArgument(RpcError):
    """INVALID_ARGUMENT: the request is malformed; the message says why."""


class Unauthenticated(RpcError):
    """UNAUTHENTICATED: the connection's SVID was not accepted."""


class PermissionDenied(RpcError):
    """PERMISSION_DENIED: policy or an invariant refused the call."""


class NotFound(RpcError):
    """NOT_FOUND: no such task, approval or entry."""


class FailedPrecondition(RpcError):
    """FAILED_PRECONDITION: e.g. the task is no longer active."""


class Unavailable(RpcError):
    """UNAVAILABLE: Mandate could not be reached, or its store is down."""


_BY_CODE: dict[str, type[RpcError]] = {
    "INVALID_ARGUMENT": InvalidArgument,
    "UNAUTHENTICATED": Unauthenticated,
    "PERMISSION_DENIED": PermissionDenied,
    "NOT_FOUND": NotFound,
    "FAILED_PRECONDITION": FailedPrecondition,
    "UNAVAILABLE": Unavailable,
}


def _hint(code: str) -> str:
    if code == "UNAVAILABLE":
        return " (is `mandate serve` running at that address, and does its certificate verify against the bundle?)"
    if code == "UNAUTHENTICATED":
        return " (is the SVID issued by a trust domain the server trusts, and not expired?)"
    return ""


def rpc_error(method: str, code: str, details: str) -> RpcError:
    """The `RpcError` subclass for a gRPC status code name."""
    return _BY_CODE.get(code, RpcError)(method, code, details)
