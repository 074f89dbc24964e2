"""Mandate for Python agents.

* identity: `FileSvidSource`, `WorkloadApiSvidSource` (rotating X.509-SVIDs);
* `agent_checksum`, in exactly Mandate's canonical form;
* `Mandate`: tasks, tokens, approvals and decisions over mTLS;
* `TokenHolder` and `MandateAuth`: a fresh task token on outgoing calls;
* `Denied`, `NeedsApproval` and the other `MandateError`s.
"""

from .checksum import CHECKSUM_PREFIX, agent_checksum, agent_checksum_files, canonical_json
from .client import Mandate, parse_resource
from .errors import (
    ApprovalRefused,
    ApprovalTimeout,
    ChecksumError,
    Denied,
    FailedPrecondition,
    IdentityError,
    InvalidArgument,
    MandateError,
    NeedsApproval,
    NotFound,
    PermissionDenied,
    RpcError,
    TokenError,
    Unauthenticated,
    Unavailable,
)
from .identity import FileSvidSource, Svid, SvidSource, WorkloadApiSvidSource, svid_from_pem
from .tokens import TOKEN_HEADER, MandateAuth, TokenHolder
from .types import Approval, ApprovalState, Decision, Outcome, Task, TaskState, TaskToken, token_claims

__all__ = [
    "CHECKSUM_PREFIX",
    "TOKEN_HEADER",
    "Approval",
    "ApprovalRefused",
    "ApprovalState",
    "ApprovalTimeout",
    "ChecksumError",
    "Decision",
    "Denied",
    "FailedPrecondition",
    "FileSvidSource",
    "IdentityError",
    "InvalidArgument",
    "Mandate",
    "MandateAuth",
    "MandateError",
    "NeedsApproval",
    "NotFound",
    "Outcome",
    "PermissionDenied",
    "RpcError",
    "Svid",
    "SvidSource",
    "Task",
    "TaskState",
    "TaskToken",
    "TokenError",
    "TokenHolder",
    "Unauthenticated",
    "Unavailable",
    "WorkloadApiSvidSource",
    "agent_checksum",
    "agent_checksum_files",
    "canonical_json",
    "parse_resource",
    "svid_from_pem",
    "token_claims",
]
