"""Inflights: the window of MsgApp messages sent to a follower but not yet acknowledged."""

from __future__ import annotations

from collections import deque


class Inflights:
    """Inflights bounds how many (and how many bytes of) MsgApps may be unacknowledged.

    Each in-flight message is recorded by the index of its last entry; an
    acknowledgement up to index i frees every message ending at or before i.
    """

    __slots__ = ("_bytes", "_queue", "max_bytes", "size")

    def __init__(self, size: int, max_bytes: int = 0) -> None:
        # size: maximum number of messages in flight; max_bytes: 0 means unlimited.
        self.size = size
        self.max_bytes = max_bytes
        self._queue: deque[tuple[int, int]] = deque()  # (last index, payload bytes), ascending index
        self._bytes = 0

    def clone(self) -> Inflights:
        """Clone returns an independent copy."""
        c = Inflights(self.size, self.max_bytes)
        c._queue = deque(self._queue)
        c._bytes = self._bytes
        return c

    def add(self, index: int, nbytes: int = 0) -> None:
        """Add records a message whose last entry is index; the window must not be full."""
        if self.full():
            raise AssertionError("cannot add into a full inflights")
        self._queue.append((index, nbytes))
        self._bytes += nbytes

    def free_le(self, to: int) -> None:
        """Free_le frees every message whose last index is <= to."""
        q = self._queue
        while q and q[0][0] <= to:
            self._bytes -= q.popleft()[1]

    def free_first_one(self) -> None:
        """Free_first_one frees the oldest message (presumed lost) to unblock a full window."""
        if self._queue:
            self._bytes -= self._queue.popleft()[1]

    def full(self) -> bool:
        """Full: the window holds `size` messages, or `max_bytes` (if set) of payload; add() would fail."""
        return len(self._queue) >= self.size or (self.max_bytes > 0 and self._bytes >= self.max_bytes)

    def count(self) -> int:
        """Count: how many MsgApps are recorded and not yet freed by an acknowledgement."""
        return len(self._queue)

    def reset(self) -> None:
        """Reset forgets every message in flight."""
        self._queue.clear()
        self._bytes = 0
