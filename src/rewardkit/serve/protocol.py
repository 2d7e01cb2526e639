"""The HTTP/1.1 connection protocol of ``rewardkit serve``: uvicorn's h11 protocol with a header deadline
and idle-connection reaping, so slow or silent clients cannot hold the connection limit.

uvicorn bounds the body (the app's ``--receive-timeout``) and the idle time after a response
(``timeout_keep_alive``), but not the time a client takes to send its request line and headers: a client
trickling header bytes (slowloris) resets the keep-alive timer with every byte and holds its connection,
and with it a place under ``limit_concurrency``, for as long as it likes. Here:

- **header deadline**: a connection has ``header_timeout`` seconds from its start, and from the end of
  each response, to deliver a complete request head; past it, a connection still waiting for one is
  closed;
- **reaping**: a new connection that finds ``max_connections`` open first closes the oldest connections
  that are waiting for a request head (trickling or idle), so the ones with requests in flight and the
  newcomer keep being served.
"""

from __future__ import annotations

import asyncio
import time

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a request-head deadline and reaping (see the module docstring).
    Configure with :func:`guarded_protocol`."""

    header_timeout: float = 10.0
    max_connections: int = 1024

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self.born = time.monotonic()
        self.deadline: asyncio.TimerHandle | None = None
        self._reap(self.max_connections - 2)  # uvicorn answers 503 at len(connections) >= the limit
        super().connection_made(transport)
        self._arm()

    def _arm(self) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
        self.deadline = self.loop.call_later(self.header_timeout, self._expire)

    def waiting_for_head(self) -> bool:
        """Open, and no request in flight: idle or receiving a request line and headers."""
        busy = self.cycle is not None and not self.cycle.response_complete
        return not busy and self.conn.their_state is h11.IDLE and not self.transport.is_closing()

    def _close(self) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
        self.connections.discard(self)  # counted out now; uvicorn's connection_lost follows
        self.transport.close()

    def _expire(self) -> None:
        self.deadline = None
        if self.waiting_for_head():
            self._close()

    def _reap(self, keep: int) -> None:
        """Close the oldest connections waiting for a request head until at most ``keep`` are open."""
        excess = len(self.connections) - keep
        if excess <= 0:
            return
        idle = sorted(
            (c for c in self.connections if isinstance(c, GuardedH11Protocol) and c.waiting_for_head()),
            key=lambda c: c.born,
        )
        for conn in idle[:excess]:
            conn._close()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
        super().connection_lost(exc)


def guarded_protocol(header_timeout: float, max_connections: int) -> type[GuardedH11Protocol]:
    """The protocol class for ``uvicorn.Config(http=...)`` with these limits."""
    return type(
        "RewardkitH11Protocol",
        (GuardedH11Protocol,),
        {"header_timeout": float(header_timeout), "max_connections": int(max_connections)},
    )
