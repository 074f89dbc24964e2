"""Tasks and decisions against the real server: create, delegate, token, allow, deny, revoke."""

from __future__ import annotations

import pytest

from conftest import PATCHER, REVIEWER, Server
from mandate import Denied, Mandate, Outcome, PermissionDenied, TaskState


def start(frontend: Mandate, actions: list[str], resources: list[str] | None = None) -> str:
    task = frontend.create_task(
        PATCHER,
        on_behalf_of="alice",
        intent="fix the payments build",
        actions=actions,
        resources=resources or ["repos"],
        max_sensitivity=1,
        ttl_seconds=600,
    )
    assert task.state is TaskState.ACTIVE
    assert task.delegatee == PATCHER and task.originator == "alice" and task.revision > 0
    return task.id


def test_allowed_and_denied_calls_within_a_task(frontend: Mandate, patcher: Mandate) -> None:
    task_id = start(frontend, ["read", "write"])
    holder = patcher.token_holder(task_id)
    decision = patcher.authorize("write", "repo:acme/payments", token=holder)
    assert decision.allowed and decision.outcome is Outcome.ALLOW
    assert decision.decision_id and decision.policy_hash.startswith("sha256:")

    with pytest.raises(Denied) as denied:
        patcher.authorize("delete", "repo:acme/payments", token=holder)
    assert "mandate.guard.action-not-in-task.delete" in denied.value.policies
    assert denied.value.decision_id and denied.value.decision_id != decision.decision_id
    assert "delete" in str(denied.value) and denied.value.decision_id in str(denied.value)

    # Outside the task's scope, and above its sensitivity.
    with pytest.raises(Denied) as outside:
        patcher.authorize("read", "customer-db", token=holder)
    assert "mandate.guard.resource-outside-scope" in outside.value.policies

    # decide() answers without raising.
    assert patcher.decide("delete", "repo:acme/payments", token=holder).outcome is Outcome.DENY


def test_typed_resources_and_no_task(patcher: Mandate) -> None:
    assert patcher.authorize("read", 'Mandate::Resource::"handbook"').allowed
    with pytest.raises(Denied) as denied:
        patcher.authorize("read", "payroll")
    assert denied.value.reasons  # machine-readable, such as no-permit


def test_delegation_narrows_and_tokens_are_per_delegatee(
    frontend: Mandate, patcher: Mandate, reviewer: Mandate
) -> None:
    task_id = start(frontend, ["read", "write"])
    child = patcher.delegate_task(
        task_id, REVIEWER, intent="review the fix", actions=["read"], resources=["repo:acme/payments"], max_sensitivity=1
    )
    assert child.parent_id == task_id and child.depth == 1 and child.delegator == PATCHER
    assert child.expires_at == frontend.get_task(task_id).expires_at

    token = reviewer.issue_token(child.id)
    assert reviewer.authorize("read", "repo:acme/payments", token=token.token).allowed
    with pytest.raises(Denied):
        reviewer.authorize("write", "repo:acme/payments", token=token.token)

    # Widening is refused with the field named; only the delegatee gets a token.
    with pytest.raises(PermissionDenied) as widened:
        patcher.delegate_task(task_id, REVIEWER, intent="x", actions=["delete"], resources=["repos"], max_sensitivity=1)
    assert widened.value.code == "PERMISSION_DENIED" and "widens" in widened.value.details
    with pytest.raises(PermissionDenied):
        patcher.issue_token(child.id)

    # The reviewer's token over the patcher's SVID is bound elsewhere.
    with pytest.raises(Denied):
        patcher.authorize("read", "repo:acme/payments", token=token.token)


def test_revoke_turns_the_next_call_into_denied(frontend: Mandate, patcher: Mandate, reviewer: Mandate) -> None:
    task_id = start(frontend, ["read", "write"])
    child = patcher.delegate_task(
        task_id, REVIEWER, intent="review", actions=["read"], resources=["repos"], max_sensitivity=1
    )
    holder = patcher.token_holder(task_id)
    child_holder = reviewer.token_holder(child.id)
    assert patcher.authorize("write", "repo:acme/payments", token=holder).allowed
    assert reviewer.authorize("read", "repo:acme/web", token=child_holder).allowed

    revoked = frontend.revoke_task(task_id, reason="the user cancelled")
    assert set(revoked) == {task_id, child.id}
    with pytest.raises(Denied) as denied:
        patcher.authorize("write", "repo:acme/payments", token=holder)
    assert "mandate.guard.task-not-active" in denied.value.policies
    with pytest.raises(Denied) as child_denied:
        reviewer.authorize("read", "repo:acme/web", token=child_holder)
    assert "mandate.guard.task-not-active" in child_denied.value.policies
    assert patcher.get_task(child.id).state is TaskState.REVOKED


def test_complete(frontend: Mandate, patcher: Mandate) -> None:
    task_id = start(frontend, ["read"])
    holder = patcher.token_holder(task_id)
    assert patcher.authorize("read", "repo:acme/web", token=holder).allowed
    assert patcher.complete_task(task_id) > 0
    assert patcher.get_task(task_id).state is TaskState.COMPLETED
    with pytest.raises(Denied):
        patcher.authorize("read", "repo:acme/web", token=holder)


def test_a_server_that_is_not_there_is_a_clear_error(server: Server) -> None:
    from mandate import FileSvidSource, Unavailable

    client = Mandate(FileSvidSource.dev(server.dev, "agents/patcher"), "localhost:1", timeout=2)
    with pytest.raises(Unavailable) as e:
        client.authorize("read", "handbook")
    assert "mandate serve" in str(e.value)
    client.close()
