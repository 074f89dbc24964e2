"""`TokenHolder`: a task token kept fresh, and put on outgoing calls.

The holder asks Mandate for a token when it has none, when the one it has
is within `refresh_before` seconds of expiry (at most half its lifetime, so
a short token is not fetched on every call), and when the agent's SVID
rotated (a token is bound to the certificate it was issued over and denies
on any other). `MandateAuth` adds it to `httpx` requests in the header
Mandate's Envoy route reads (`x-mandate-token` by default);
`bearer_headers()` gives `authorization: Bearer` for MCP client sessions.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING

import httpx

from .types import TaskToken

if TYPE_CHECKING:
    from .client import Mandate

#: The header Mandate reads a task token from in Envoy's `Check`
#: (`[envoy] token_header`).
TOKEN_HEADER = "x-mandate-token"


class TokenHolder:
    """The current task token for one task, refreshed before it expires."""

    def __init__(
        self,
        mandate: Mandate,
        task_id: str,
        *,
        ttl_seconds: int = 0,
        agent_proof: str = "",
        refresh_before: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.mandate = mandate
        self.task_id = task_id
        self.ttl_seconds = ttl_seconds
        self.agent_proof = agent_proof
        self.refresh_before = refresh_before
        self._clock = clock
        self._lock = threading.Lock()
        self._current: TaskToken | None = None
        self._issued_at = 0.0
        #: How many tokens this holder has fetched.
        self.fetches = 0

    def current(self) -> TaskToken:
        """The token to present now, fetching a new one when due."""
        with self._lock:
            if self._due():
                now = self._clock()
                self._current = self.mandate.issue_token(
                    self.task_id, ttl_seconds=self.ttl_seconds, agent_proof=self.agent_proof
                )
                self._issued_at = now
                self.fetches += 1
            assert self._current is not None
            return self._current

    def token(self) -> str:
        """The compact token string to present now."""
        return self.current().token

    def invalidate(self) -> None:
        """Forget the token, so the next use fetches a new one."""
        with self._lock:
            self._current = None

    def _due(self) -> bool:
        token = self._current
        if token is None:
            return True
        if token.bound_to != self.mandate.svid().leaf_sha256:
            return True  # the SVID rotated: the old binding no longer verifies
        lifetime = max(token.expires_at - self._issued_at, 0.0)
        margin = min(self.refresh_before, lifetime / 2)
        return self._clock() >= token.expires_at - margin

    def httpx_auth(self, header: str = TOKEN_HEADER) -> MandateAuth:
        """An `httpx.Auth` that puts the token on every request."""
        return MandateAuth(self, header)

    def bearer_headers(self) -> dict[str, str]:
        """`{"authorization": "Bearer <token>"}`, for MCP client sessions."""
        return {"authorization": f"Bearer {self.token()}"}


class MandateAuth(httpx.Auth):
    """Adds the task token to each request; on a 401, fetches a new one and retries once."""

    def __init__(self, holder: TokenHolder, header: str = TOKEN_HEADER) -> None:
        self.holder = holder
        self.header = header

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers[self.header] = self.holder.token()
        response = yield request
        if response.status_code == 401:
            self.holder.invalidate()
            request.headers[self.header] = self.holder.token()
            yield request
