"""examples/python/agent.py runs end to end against the server."""

from __future__ import annotations

import subprocess
import sys

from conftest import REPO, Server


def test_the_example_agent(server: Server) -> None:
    out = subprocess.run(
        [sys.executable, str(REPO / "examples" / "python" / "agent.py"), "--dev", str(server.dev),
         "--server", server.addr, "--auto-approve", "--approval-timeout", "30"],
        capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    assert any(line.startswith("ALLOW write repo:acme/payments") for line in lines), out.stdout
    assert any(line.startswith("DENY  read customer-db") for line in lines), out.stdout
    assert any(line.startswith("NEEDS APPROVAL delete repo:acme/web") for line in lines), out.stdout
    assert any(line.startswith("ALLOW delete repo:acme/web after approval") for line in lines), out.stdout
    assert any("mandate.guard.task-not-active" in line for line in lines), out.stdout
