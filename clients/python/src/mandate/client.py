"""`Mandate`: the gRPC API over mTLS with the agent's current SVID."""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import grpc
from google.protobuf import struct_pb2

from .errors import (
    ApprovalRefused,
    ApprovalTimeout,
    Denied,
    MandateError,
    NeedsApproval,
    NotFound,
    rpc_error,
)
from .identity import FileSvidSource, Svid, SvidSource, WorkloadApiSvidSource
from .types import Approval, ApprovalState, Decision, Outcome, Task, TaskToken, token_claims
from .v1 import (
    approval_pb2,
    approval_pb2_grpc,
    authorization_pb2,
    authorization_pb2_grpc,
    task_pb2,
    task_pb2_grpc,
)

if TYPE_CHECKING:
    from .tokens import TokenHolder

T = TypeVar("T")

_TYPED_RESOURCE = re.compile(r'^(?P<type>[A-Za-z_][A-Za-z0-9_]*(?:::[A-Za-z_][A-Za-z0-9_]*)*)::"(?P<id>.*)"$')


def parse_resource(resource: str, resource_type: str | None = None) -> tuple[str, str]:
    """`(type, id)` of `repo:acme/x` or `Mandate::Resource::"repo:acme/x"`."""
    if resource_type is not None:
        return resource_type, resource
    match = _TYPED_RESOURCE.match(resource)
    if match:
        return match.group("type"), match.group("id").replace('\\"', '"')
    return "", resource


class Mandate:
    """A client of one Mandate server, as the workload `identity` names.

    `target` is `host:port`. Mandate's certificate is verified against the
    SVID source's bundle, and its host name against `target` (the dev
    server's SVID carries `localhost` and `127.0.0.1`); pass `server_name`
    when the certificate names another host. Every method is blocking and
    thread-safe; errors are `MandateError`s.
    """

    def __init__(
        self,
        identity: SvidSource,
        target: str = "localhost:7443",
        *,
        timeout: float = 10.0,
        server_name: str | None = None,
    ) -> None:
        self.identity = identity
        self.target = target
        self.timeout = timeout
        self._server_name = server_name
        self._lock = threading.Lock()
        self._channel: grpc.Channel | None = None
        self._channel_svid: Svid | None = None
        self.channels_opened = 0

    @classmethod
    def from_files(
        cls,
        cert: str | os.PathLike[str],
        key: str | os.PathLike[str],
        bundle: str | os.PathLike[str],
        target: str = "localhost:7443",
        **kwargs: Any,
    ) -> Mandate:
        """A client with the SVID in PEM files (reloaded when they change)."""
        return cls(FileSvidSource(cert, key, bundle), target, **kwargs)

    @classmethod
    def from_workload_api(
        cls, socket: str | None = None, target: str = "localhost:7443", **kwargs: Any
    ) -> Mandate:
        """A client with the SVID of the SPIFFE Workload API (a SPIRE agent)."""
        return cls(WorkloadApiSvidSource(socket), target, **kwargs)

    # -- plumbing ---------------------------------------------------------

    def svid(self) -> Svid:
        """The SVID the next call presents."""
        return self.identity.current()

    @property
    def spiffe_id(self) -> str:
        return self.svid().spiffe_id

    def _current_channel(self) -> tuple[grpc.Channel, Svid]:
        svid = self.identity.current()
        with self._lock:
            if self._channel is None or self._channel_svid is None or self._channel_svid.leaf_sha256 != svid.leaf_sha256:
                old = self._channel
                credentials = grpc.ssl_channel_credentials(
                    root_certificates=svid.bundle_pem,
                    private_key=svid.key_pem,
                    certificate_chain=svid.cert_chain_pem,
                )
                options: list[tuple[str, Any]] = []
                if self._server_name:
                    options.append(("grpc.ssl_target_name_override", self._server_name))
                # A fresh subchannel pool: a new SVID must mean a new handshake.
                options.append(("grpc.use_local_subchannel_pool", 1))
                self._channel = grpc.secure_channel(self.target, credentials, options=options)
                self._channel_svid = svid
                self.channels_opened += 1
                if old is not None:
                    # Calls in flight on the old channel may finish first.
                    retire = threading.Timer(self.timeout + 1.0, old.close)
                    retire.daemon = True
                    retire.start()
            return self._channel, self._channel_svid

    def _call(self, method: str, invoke: Callable[[grpc.Channel], T]) -> T:
        channel, _ = self._current_channel()
        try:
            return invoke(channel)
        except grpc.RpcError as e:
            code = e.code() if hasattr(e, "code") else None
            details = e.details() if hasattr(e, "details") else str(e)
            raise rpc_error(method, code.name if code is not None else "UNKNOWN", details or "") from e

    def close(self) -> None:
        """Close the channel and the SVID source."""
        with self._lock:
            if self._channel is not None:
                self._channel.close()
                self._channel = None
        self.identity.close()

    def __enter__(self) -> Mandate:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- decisions ----------------------------------------------------------

    def decide(
        self,
        action: str,
        resource: str,
        *,
        resource_type: str | None = None,
        context: Mapping[str, Any] | None = None,
        token: str | TokenHolder | None = None,
        subject: str | None = None,
        subject_certificate_pem: str | bytes | None = None,
        min_revision: int = 0,
    ) -> Decision:
        """The answer to `action` on `resource`, whatever it is (never raises on deny).

        `token` is a task token or a `TokenHolder` (asked for a fresh one).
        `subject` and `subject_certificate_pem` are for an enforcement point
        asking on behalf of another workload.
        """
        rtype, rid = parse_resource(resource, resource_type)
        request = authorization_pb2.AuthorizeRequest(
            action=action,
            resource=authorization_pb2.Resource(type=rtype, id=rid),
            min_revision=min_revision,
        )
        if context:
            ctx = struct_pb2.Struct()
            ctx.update(dict(context))
            request.context.CopyFrom(ctx)
        if token is not None:
            request.token = token if isinstance(token, str) else token.token()
        if subject is not None:
            pem = subject_certificate_pem.decode() if isinstance(subject_certificate_pem, bytes) else subject_certificate_pem
            request.subject.CopyFrom(authorization_pb2.Subject(spiffe_id=subject, certificate_pem=pem or ""))
        response = self._call(
            "AuthorizationService.Authorize",
            lambda ch: _stub(authorization_pb2_grpc.AuthorizationServiceStub, ch).Authorize(request, timeout=self.timeout),
        )
        return Decision.from_pb(response)

    def authorize(self, action: str, resource: str, **kwargs: Any) -> Decision:
        """Like `decide`, but an answer other than allow raises.

        Raises `Denied` (with `reasons` and `decision_id`) on a deny and
        `NeedsApproval` (with `approval_id`) when a human must approve first.
        """
        decision = self.decide(action, resource, **kwargs)
        return _raise_unless_allowed(decision, action, resource)

    def authorize_with_approval(
        self,
        action: str,
        resource: str,
        *,
        token: str | TokenHolder,
        timeout: float = 300.0,
        poll_interval: float = 1.0,
        on_pending: Callable[[NeedsApproval], None] | None = None,
        **kwargs: Any,
    ) -> Decision:
        """`authorize`, waiting (at most `timeout` seconds) for an approval it needs.

        On needs-approval, calls `on_pending` (to tell a human, say), waits
        for the approval's decision and asks once more. Raises
        `ApprovalTimeout` when nobody decided in time, `ApprovalRefused`
        when a human said no, and `Denied` or `NeedsApproval` when the retry
        is still not allowed (the task changed meanwhile, say).
        """
        try:
            return self.authorize(action, resource, token=token, **kwargs)
        except NeedsApproval as pending:
            if on_pending is not None:
                on_pending(pending)
            raw = token if isinstance(token, str) else token.token()
            task_id = str(token_claims(raw).get("task", ""))
            self.wait_for_approval(pending.approval_id, task_id=task_id, timeout=timeout, poll_interval=poll_interval)
            return self.authorize(action, resource, token=token, **kwargs)

    # -- tasks -------------------------------------------------------------

    def create_task(
        self,
        delegatee: str,
        *,
        on_behalf_of: str,
        intent: str,
        actions: Iterable[str],
        resources: Iterable[str],
        max_sensitivity: int,
        ttl_seconds: int = 3600,
        expires_at: int = 0,
    ) -> Task:
        """Start a root task for a user (front ends in `task-creators`)."""
        request = task_pb2.CreateTaskRequest(
            intent=intent,
            delegatee=delegatee,
            on_behalf_of=on_behalf_of,
            scope=_scope(actions, resources, max_sensitivity, ttl_seconds, expires_at),
        )
        response = self._call(
            "TaskService.CreateTask",
            lambda ch: _stub(task_pb2_grpc.TaskServiceStub, ch).CreateTask(request, timeout=self.timeout),
        )
        return Task.from_pb(response.task, response.revision)

    def delegate_task(
        self,
        parent_id: str,
        delegatee: str,
        *,
        intent: str,
        actions: Iterable[str],
        resources: Iterable[str],
        max_sensitivity: int,
        ttl_seconds: int = 0,
        expires_at: int = 0,
        agent_proof: str = "",
    ) -> Task:
        """Delegate part of the caller's own active task to another agent.

        With neither `ttl_seconds` nor `expires_at`, the sub-task ends with
        its parent.
        """
        if not ttl_seconds and not expires_at:
            expires_at = self.get_task(parent_id).expires_at
        request = task_pb2.DelegateTaskRequest(
            parent_id=parent_id,
            intent=intent,
            delegatee=delegatee,
            scope=_scope(actions, resources, max_sensitivity, ttl_seconds, expires_at),
            agent_proof=agent_proof,
        )
        response = self._call(
            "TaskService.DelegateTask",
            lambda ch: _stub(task_pb2_grpc.TaskServiceStub, ch).DelegateTask(request, timeout=self.timeout),
        )
        return Task.from_pb(response.task, response.revision)

    def get_task(self, task_id: str) -> Task:
        request = task_pb2.GetTaskRequest(task_id=task_id)
        response = self._call(
            "TaskService.GetTask", lambda ch: _stub(task_pb2_grpc.TaskServiceStub, ch).GetTask(request, timeout=self.timeout)
        )
        return Task.from_pb(response)

    def issue_token(self, task_id: str, *, ttl_seconds: int = 0, agent_proof: str = "") -> TaskToken:
        """A token for `task_id`, bound to the SVID of this connection."""
        request = task_pb2.IssueTaskTokenRequest(task_id=task_id, ttl_seconds=ttl_seconds, agent_proof=agent_proof)
        channel, svid = self._current_channel()
        try:
            response = _stub(task_pb2_grpc.TaskServiceStub, channel).IssueTaskToken(request, timeout=self.timeout)
        except grpc.RpcError as e:
            raise rpc_error("TaskService.IssueTaskToken", e.code().name, e.details() or "") from e
        return TaskToken(
            token=response.token,
            jti=response.jti,
            expires_at=response.expires_at,
            task_id=task_id,
            bound_to=svid.leaf_sha256,
        )

    def token_holder(
        self, task_id: str, *, ttl_seconds: int = 0, agent_proof: str = "", refresh_before: float = 30.0
    ) -> TokenHolder:
        """A `TokenHolder` for `task_id` over this client."""
        from .tokens import TokenHolder

        return TokenHolder(self, task_id, ttl_seconds=ttl_seconds, agent_proof=agent_proof, refresh_before=refresh_before)

    def complete_task(self, task_id: str) -> int:
        """Mark a task done (its delegatee); returns the write's revision."""
        request = task_pb2.CompleteTaskRequest(task_id=task_id)
        response = self._call(
            "TaskService.CompleteTask",
            lambda ch: _stub(task_pb2_grpc.TaskServiceStub, ch).CompleteTask(request, timeout=self.timeout),
        )
        return int(response.revision)

    def revoke_task(self, task_id: str, reason: str = "") -> tuple[str, ...]:
        """Revoke a task and its subtree; returns the ids whose state changed.

        Returns only once every later decision on that server denies.
        """
        request = task_pb2.RevokeTaskRequest(task_id=task_id, reason=reason)
        response = self._call(
            "TaskService.RevokeTask",
            lambda ch: _stub(task_pb2_grpc.TaskServiceStub, ch).RevokeTask(request, timeout=self.timeout),
        )
        return tuple(response.revoked_task_ids)

    # -- approvals ---------------------------------------------------------

    def request_approval(
        self, task_id: str, action: str, resource: str, *, justification: str = "", agent_proof: str = ""
    ) -> Approval:
        rtype, rid = parse_resource(resource)
        request = approval_pb2.RequestApprovalRequest(
            task_id=task_id,
            action=action,
            resource=approval_pb2.ApprovalResource(type=rtype, id=rid),
            justification=justification,
            agent_proof=agent_proof,
        )
        response = self._call(
            "ApprovalService.RequestApproval",
            lambda ch: _stub(approval_pb2_grpc.ApprovalServiceStub, ch).RequestApproval(request, timeout=self.timeout),
        )
        return Approval.from_pb(response.approval)

    def decide_approval(
        self, approval_id: str, *, approve: bool, approver: str, valid_for_seconds: int = 3600
    ) -> Approval:
        """Relay a user's decision (approval front ends)."""
        request = approval_pb2.DecideApprovalRequest(
            approval_id=approval_id, approve=approve, approver=approver, valid_for_seconds=valid_for_seconds
        )
        response = self._call(
            "ApprovalService.DecideApproval",
            lambda ch: _stub(approval_pb2_grpc.ApprovalServiceStub, ch).DecideApproval(request, timeout=self.timeout),
        )
        return Approval.from_pb(response.approval)

    def list_approvals(self, *, task_id: str = "", state: ApprovalState | None = None) -> list[Approval]:
        """Approvals the caller may read, oldest first (every page)."""
        found: list[Approval] = []
        page = ""
        while True:
            request = approval_pb2.ListApprovalsRequest(
                task_id=task_id, state=f"APPROVAL_STATE_{state.name}" if state else None, page_size=500, page_token=page
            )
            response = self._call(
                "ApprovalService.ListApprovals",
                lambda ch: _stub(approval_pb2_grpc.ApprovalServiceStub, ch).ListApprovals(request, timeout=self.timeout),
            )
            found.extend(Approval.from_pb(a) for a in response.approvals)
            page = response.next_page_token
            if not page:
                return found

    def get_approval(self, approval_id: str, *, task_id: str = "") -> Approval:
        for approval in self.list_approvals(task_id=task_id):
            if approval.id == approval_id:
                return approval
        raise NotFound(
            "ApprovalService.ListApprovals",
            "NOT_FOUND",
            f"approval `{approval_id}` is not among those this caller may read",
        )

    def wait_for_approval(
        self, approval_id: str, *, task_id: str = "", timeout: float = 300.0, poll_interval: float = 1.0
    ) -> Approval:
        """Poll until the approval is decided; return it once it counts.

        Raises `ApprovalRefused` when denied or revoked, `ApprovalTimeout`
        after `timeout` seconds without a decision.
        """
        if timeout <= 0 or poll_interval <= 0:
            raise MandateError("wait_for_approval needs a positive timeout and poll_interval")
        started = time.monotonic()
        while True:
            approval = self.get_approval(approval_id, task_id=task_id)
            if approval.state is ApprovalState.APPROVED and approval.current:
                return approval
            if approval.state in (ApprovalState.DENIED, ApprovalState.REVOKED):
                raise ApprovalRefused(approval_id, approval.state.name.lower(), approval.approver)
            if approval.state is ApprovalState.APPROVED:
                raise ApprovalRefused(
                    approval_id,
                    "approved but no longer counts (expired, or the task's bounds changed)",
                    approval.approver,
                )
            waited = time.monotonic() - started
            if waited >= timeout:
                raise ApprovalTimeout(approval_id, waited)
            time.sleep(min(poll_interval, max(timeout - waited, 0.0)))


def _stub(factory: Any, channel: grpc.Channel) -> Any:
    # The generated service stubs are untyped; requests and responses are.
    return factory(channel)


def _raise_unless_allowed(decision: Decision, action: str, resource: str) -> Decision:
    if decision.outcome is Outcome.ALLOW:
        return decision
    if decision.outcome is Outcome.NEEDS_APPROVAL:
        raise NeedsApproval(decision, action, resource)
    raise Denied(decision, action, resource)


def _scope(
    actions: Iterable[str], resources: Iterable[str], max_sensitivity: int, ttl_seconds: int, expires_at: int
) -> task_pb2.TaskScope:
    if isinstance(actions, str) or isinstance(resources, str):
        raise MandateError("actions and resources are lists of ids, not a single string")
    return task_pb2.TaskScope(
        actions=list(actions),
        resources=list(resources),
        max_sensitivity=max_sensitivity,
        ttl_seconds=ttl_seconds,
        expires_at=expires_at,
    )
