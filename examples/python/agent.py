"""A patching agent written with Mandate's Python library (clients/python).

    python3 -m venv .venv && .venv/bin/pip install ./clients/python
    .venv/bin/python examples/python/agent.py --dev data/dev

against `mandate serve --catalog examples/catalog.toml`. A front end (the
dev `workloads/frontend` SVID) starts a task for the `agents/patcher` agent
on behalf of alice; the agent keeps a task token fresh, reads and writes
within the task, is refused what the task does not cover, and asks a human
before deleting a repository: it waits until someone runs the printed
`mandate approval decide` command (or, with `--auto-approve`, the front end
approves as alice after a moment). Exit code 0 when every answer was the
expected one.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

from mandate import Denied, FileSvidSource, Mandate, MandateError, NeedsApproval, agent_checksum

PATCHER = "spiffe://mandate.local/agents/patcher"

# What makes this agent behave as it does; registered as its checksum.
PROMPT = "You fix failing builds. Change only what the task names."
TOOLS = [{"name": "git", "actions": ["read", "write", "delete"]}]
CONFIG = {"model": "example-1", "temperature": 0}


def main() -> int:
    args = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    args.add_argument("--dev", type=Path, default=Path("data/dev"), help="the dev trust domain")
    args.add_argument("--server", default="localhost:7443")
    args.add_argument("--auto-approve", action="store_true", help="the front end approves as alice")
    args.add_argument("--approval-timeout", type=float, default=300)
    opts = args.parse_args()

    frontend = Mandate(FileSvidSource.dev(opts.dev, "workloads/frontend"), opts.server)
    agent = Mandate(FileSvidSource.dev(opts.dev, "agents/patcher"), opts.server)
    # The catalog registers no checksum for the patcher, so the proof is
    # optional here; with one registered it is what lets the agent in.
    proof = agent_checksum(PROMPT, TOOLS, CONFIG)
    print(f"agent {agent.spiffe_id}, checksum {proof}")

    task = frontend.create_task(
        PATCHER, on_behalf_of="alice", intent="fix the payments build, drop the old web repo",
        actions=["read", "write", "delete"], resources=["repos"], max_sensitivity=1, ttl_seconds=900,
    )
    print(f"task {task.id} for {task.delegatee}, on behalf of {task.originator}")
    holder = agent.token_holder(task.id, agent_proof=proof)

    for action, resource in [("read", "repo:acme/payments"), ("write", "repo:acme/payments")]:
        decision = agent.authorize(action, resource, token=holder)
        print(f"ALLOW {action} {resource} ({', '.join(decision.policies)})")

    try:
        agent.authorize("read", "customer-db", token=holder)
        print("unexpected: reading customer-db was allowed")
        return 1
    except Denied as denied:
        print(f"DENY  read customer-db: {', '.join(denied.policies or denied.reasons)} ({denied.decision_id})")

    def tell_a_human(pending: NeedsApproval) -> None:
        print(f"NEEDS APPROVAL delete repo:acme/web: approval {pending.approval_id}; approve it with")
        print(f"  mandate approval decide --cert {opts.dev}/workloads/frontend/svid.pem "
              f"--key {opts.dev}/workloads/frontend/svid.key --ca {opts.dev}/bundle.pem "
              f"--approval {pending.approval_id} --approve --approver alice")
        if opts.auto_approve:
            def approve() -> None:
                time.sleep(1)
                frontend.decide_approval(pending.approval_id, approve=True, approver="alice", valid_for_seconds=600)
            threading.Thread(target=approve, daemon=True).start()

    decision = agent.authorize_with_approval(
        "delete", "repo:acme/web", token=holder, timeout=opts.approval_timeout, on_pending=tell_a_human,
    )
    print(f"ALLOW delete repo:acme/web after approval ({decision.decision_id})")

    agent.complete_task(task.id)
    try:
        agent.authorize("read", "repo:acme/payments", token=holder)
        print("unexpected: the completed task still allowed a call")
        return 1
    except Denied as denied:
        print(f"DENY  read repo:acme/payments after completing the task: {', '.join(denied.policies)}")
    agent.close()
    frontend.close()
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except MandateError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
