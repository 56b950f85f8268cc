"""The SSE stream: numbered messages in a replay ring bounded by bytes, and their framing."""

from __future__ import annotations

import asyncio
from collections import deque

#: Bytes of past SSE messages kept for clients resuming with Last-Event-ID.
REPLAY_BYTES = 4 * 1024 * 1024


class Broadcaster:
    """The SSE messages: numbered, kept in a ring bounded by bytes for replay.

    ``publish`` is called on the event loop (the ticker thread hands messages
    over with ``call_soon_threadsafe``); clients wait on ``changed``.
    """

    def __init__(self, replay_bytes: int = REPLAY_BYTES) -> None:
        self.ring: deque[tuple[int, str]] = deque()
        self.bytes = 0
        self.replay_bytes = replay_bytes
        self.next_id = 1
        self.changed: asyncio.Event | None = None
        self.closing = False

    def bind(self) -> None:
        self.changed = asyncio.Event()

    def publish(self, data: str) -> None:
        self.ring.append((self.next_id, data))
        self.next_id += 1
        self.bytes += len(data)
        while self.bytes > self.replay_bytes and len(self.ring) > 1:
            _, old = self.ring.popleft()
            self.bytes -= len(old)
        changed = self.changed
        if changed is not None:
            changed.set()
            # A fresh event per message: waiters of the old one wake, later
            # waiters wait for the next message.
            self.changed = asyncio.Event()

    def after(self, last_id: int) -> list[tuple[int, str]] | None:
        """Messages after *last_id*, or None if some were already dropped."""
        if not self.ring:
            return [] if last_id < self.next_id else None
        first = self.ring[0][0]
        if last_id < first - 1:
            return None
        return [item for item in self.ring if item[0] > last_id]

    def close(self) -> None:
        self.closing = True
        if self.changed is not None:
            self.changed.set()


def sse(message_id: int, data: str, event: str = "update") -> bytes:
    return f"id: {message_id}\nevent: {event}\ndata: {data}\n\n".encode()
