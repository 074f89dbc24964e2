"""Mandate's answers and records as plain Python values."""

from __future__ import annotations

import base64
import binascii
import enum
import json
from dataclasses import dataclass
from typing import Any

from .errors import TokenError
from .v1 import approval_pb2, authorization_pb2, task_pb2


class Outcome(enum.Enum):
    """The three answers. Anything Mandate adds later reads as `DENY`."""

    ALLOW = "allow"
    DENY = "deny"
    NEEDS_APPROVAL = "needs_approval"


@dataclass(frozen=True)
class Decision:
    """One answer of `Authorize`."""

    outcome: Outcome
    decision_id: str
    #: Ids of the policies that determined the answer.
    policies: tuple[str, ...]
    #: Machine-readable reason codes, such as `no-permit`.
    reasons: tuple[str, ...]
    #: Evaluation errors, human-readable.
    errors: tuple[str, ...]
    #: State revision the decision was made at.
    revision: int
    #: With `NEEDS_APPROVAL`: the pending approval.
    approval_id: str
    policy_hash: str

    @property
    def allowed(self) -> bool:
        return self.outcome is Outcome.ALLOW

    @classmethod
    def from_pb(cls, response: authorization_pb2.AuthorizeResponse) -> Decision:
        if response.decision == authorization_pb2.DECISION_ALLOW:
            outcome = Outcome.ALLOW
        elif response.decision == authorization_pb2.DECISION_NEEDS_APPROVAL:
            outcome = Outcome.NEEDS_APPROVAL
        else:
            # DENY, UNSPECIFIED and any value this client does not know.
            outcome = Outcome.DENY
        return cls(
            outcome=outcome,
            decision_id=response.decision_id,
            policies=tuple(response.determining_policies),
            reasons=tuple(response.reasons),
            errors=tuple(response.errors),
            revision=response.revision,
            approval_id=response.approval_id,
            policy_hash=response.policy_hash,
        )


class TaskState(enum.Enum):
    UNSPECIFIED = task_pb2.TASK_STATE_UNSPECIFIED
    ACTIVE = task_pb2.TASK_STATE_ACTIVE
    COMPLETED = task_pb2.TASK_STATE_COMPLETED
    REVOKED = task_pb2.TASK_STATE_REVOKED
    EXPIRED = task_pb2.TASK_STATE_EXPIRED


@dataclass(frozen=True)
class Task:
    """A task as Mandate holds it now."""

    id: str
    intent: str
    delegator: str
    delegatee: str
    originator: str
    parent_id: str
    root_id: str
    depth: int
    actions: tuple[str, ...]
    resources: tuple[str, ...]
    max_sensitivity: int
    created_at: int
    expires_at: int
    state: TaskState
    scope_digest: str
    version: int
    #: Revision of the write that returned it (0 when read); a consistency token.
    revision: int = 0

    @classmethod
    def from_pb(cls, task: task_pb2.Task, revision: int = 0) -> Task:
        try:
            state = TaskState(task.state)
        except ValueError:
            state = TaskState.UNSPECIFIED
        return cls(
            id=task.id,
            intent=task.intent,
            delegator=task.delegator,
            delegatee=task.delegatee,
            originator=task.originator,
            parent_id=task.parent_id,
            root_id=task.root_id,
            depth=task.depth,
            actions=tuple(task.actions),
            resources=tuple(task.resources),
            max_sensitivity=task.max_sensitivity,
            created_at=task.created_at,
            expires_at=task.expires_at,
            state=state,
            scope_digest=task.scope_digest,
            version=task.version,
            revision=revision,
        )


@dataclass(frozen=True)
class TaskToken:
    """A task token, bound to the SVID it was issued over."""

    token: str
    jti: str
    #: Unix seconds.
    expires_at: int
    task_id: str
    #: SHA-256 (hex) of the leaf certificate the token is bound to.
    bound_to: str

    def claims(self) -> dict[str, Any]:
        """The token's claims, read without verifying (Mandate verifies)."""
        return token_claims(self.token)

    def __repr__(self) -> str:  # never print a whole token
        return f"TaskToken(task_id={self.task_id!r}, jti={self.jti!r}, expires_at={self.expires_at})"


def token_claims(token: str) -> dict[str, Any]:
    """The claims of a compact JWS, decoded without verification."""
    parts = token.split(".")
    if len(parts) != 3:
        raise TokenError("a task token is a compact JWS of three dot-separated parts")
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload))
    except (binascii.Error, ValueError) as e:
        raise TokenError(f"the task token's payload is not base64url JSON: {e}") from e
    if not isinstance(claims, dict):
        raise TokenError("the task token's payload is not a JSON object")
    return claims


class ApprovalState(enum.Enum):
    UNSPECIFIED = approval_pb2.APPROVAL_STATE_UNSPECIFIED
    PENDING = approval_pb2.APPROVAL_STATE_PENDING
    APPROVED = approval_pb2.APPROVAL_STATE_APPROVED
    DENIED = approval_pb2.APPROVAL_STATE_DENIED
    REVOKED = approval_pb2.APPROVAL_STATE_REVOKED


@dataclass(frozen=True)
class Approval:
    id: str
    task_id: str
    action: str
    resource_type: str
    resource_id: str
    justification: str
    requested_by: str
    requested_at: int
    state: ApprovalState
    approver: str
    decided_by: str
    decided_at: int
    expires_at: int
    scope_digest: str
    #: Whether the decision counts now.
    current: bool

    @classmethod
    def from_pb(cls, a: approval_pb2.Approval) -> Approval:
        try:
            state = ApprovalState(a.state)
        except ValueError:
            state = ApprovalState.UNSPECIFIED
        return cls(
            id=a.id,
            task_id=a.task_id,
            action=a.action,
            resource_type=a.resource.type,
            resource_id=a.resource.id,
            justification=a.justification,
            requested_by=a.requested_by,
            requested_at=a.requested_at,
            state=state,
            approver=a.approver,
            decided_by=a.decided_by,
            decided_at=a.decided_at,
            expires_at=a.expires_at,
            scope_digest=a.scope_digest,
            current=a.current,
        )
