"""Needs approval: a typed exception, and a bounded wait that retries once approved."""

from __future__ import annotations

import threading
import time

import pytest

from conftest import PATCHER
from mandate import ApprovalRefused, ApprovalState, ApprovalTimeout, Mandate, NeedsApproval, Outcome


def start(frontend: Mandate) -> str:
    return frontend.create_task(
        PATCHER, on_behalf_of="alice", intent="remove the old web repo", actions=["read", "delete"],
        resources=["repos"], max_sensitivity=1, ttl_seconds=600,
    ).id


def test_needs_approval_raises_with_the_approval_id(frontend: Mandate, patcher: Mandate) -> None:
    holder = patcher.token_holder(start(frontend))
    with pytest.raises(NeedsApproval) as pending:
        patcher.authorize("delete", "repo:acme/web", token=holder)
    assert pending.value.approval_id and pending.value.decision_id
    assert pending.value.approval_id in str(pending.value)
    assert patcher.decide("delete", "repo:acme/web", token=holder).outcome is Outcome.NEEDS_APPROVAL
    approval = patcher.get_approval(pending.value.approval_id, task_id=holder.task_id)
    assert approval.state is ApprovalState.PENDING and approval.requested_by == PATCHER


def test_waiting_succeeds_after_an_approval(frontend: Mandate, patcher: Mandate) -> None:
    holder = patcher.token_holder(start(frontend))
    told: list[str] = []
    approver_error: list[BaseException] = []

    def human() -> None:
        try:
            deadline = time.monotonic() + 20
            while not told and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(1.5)  # the agent is waiting meanwhile
            frontend.decide_approval(told[0], approve=True, approver="alice", valid_for_seconds=600)
        except BaseException as e:  # surfaced in the test thread
            approver_error.append(e)

    thread = threading.Thread(target=human)
    thread.start()
    started = time.monotonic()
    decision = patcher.authorize_with_approval(
        "delete", "repo:acme/web", token=holder, timeout=30, poll_interval=0.2,
        on_pending=lambda e: told.append(e.approval_id),
    )
    thread.join()
    assert not approver_error, approver_error
    assert decision.allowed and time.monotonic() - started >= 1.5
    assert patcher.get_approval(told[0], task_id=holder.task_id).state is ApprovalState.APPROVED


def test_the_wait_is_bounded(frontend: Mandate, patcher: Mandate) -> None:
    holder = patcher.token_holder(start(frontend))
    started = time.monotonic()
    with pytest.raises(ApprovalTimeout) as timed_out:
        patcher.authorize_with_approval("delete", "repo:acme/web", token=holder, timeout=1.0, poll_interval=0.2)
    assert 1.0 <= time.monotonic() - started < 5
    assert timed_out.value.approval_id


def test_a_denial_ends_the_wait(frontend: Mandate, patcher: Mandate) -> None:
    holder = patcher.token_holder(start(frontend))
    with pytest.raises(NeedsApproval) as pending:
        patcher.authorize("delete", "repo:acme/web", token=holder)
    frontend.decide_approval(pending.value.approval_id, approve=False, approver="alice")
    with pytest.raises(ApprovalRefused) as refused:
        patcher.wait_for_approval(pending.value.approval_id, task_id=holder.task_id, timeout=5)
    assert refused.value.state == "denied" and refused.value.approver == "alice"


def test_an_agent_may_ask_before_it_acts(frontend: Mandate, patcher: Mandate) -> None:
    holder = patcher.token_holder(start(frontend))
    asked = patcher.request_approval(
        holder.task_id, "delete", "repo:acme/web", justification="the repo was archived in 2023"
    )
    assert asked.state is ApprovalState.PENDING and asked.justification == "the repo was archived in 2023"
    with pytest.raises(NeedsApproval) as pending:
        patcher.authorize("delete", "repo:acme/web", token=holder)
    assert pending.value.approval_id == asked.id
    frontend.decide_approval(asked.id, approve=True, approver="alice", valid_for_seconds=60)
    assert patcher.wait_for_approval(asked.id, task_id=holder.task_id, timeout=5).current
    assert patcher.authorize("delete", "repo:acme/web", token=holder).allowed
