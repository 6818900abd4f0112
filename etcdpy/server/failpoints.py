"""Failpoints: named places in the server where a test makes a member crash, stall or fail.

Like etcd's gofail points, they are armed only through the environment, read once
when the module is imported::

    ETCDPY_FAILPOINTS="raftAfterSave=crash@120;beforeSendWatchResponse=pause(2)"

Each entry is ``name=action[@N]``.  The point fires the first time it is reached
with an index at or past ``N`` (points that pass a raft index use it; the others
count their own hits, starting at 1); without ``@N`` it fires on the first hit.
``crash`` fires once (the process is gone); ``pause`` and ``enospc`` fire on every
hit from then on.  Actions:

- ``crash``: exit at once with `CRASH_EXIT_CODE`, skipping every cleanup (kill -9 at that line);
- ``pause(SECONDS)``: block the calling thread, which for the event loop stalls the whole
  member (a long GC pause, a stuck disk);
- ``enospc``: raise ``OSError(ENOSPC)`` as a full disk would.

Points (the etcd name where etcd has one):

- ``raftBeforeSave`` / ``raftAfterSave``: around the durable write of entries and hard state;
- ``raftBeforeApplySnap`` / ``raftAfterApplySnap``: around installing a received snapshot;
- ``beforeApply`` / ``afterApply``: committed entries durable but not applied / applied,
  clients not yet answered;
- ``snapshotDuringSend``: the leader has streamed the first chunk of a snapshot;
- ``snapshotDuringReceive``: a follower has received the first chunk of a snapshot;
- ``compactBeforeCommitBatch`` / ``compactAfterCommitBatch``: around one compaction step's write;
- ``beforeSendWatchResponse``: a watch response is about to go to the client.

When ``ETCDPY_FAILPOINTS`` is unset, `hit` is one dictionary lookup on an empty dict.
"""

from __future__ import annotations

import errno
import os
import re
import time
from dataclasses import dataclass

ENV = "ETCDPY_FAILPOINTS"
CRASH_EXIT_CODE = 97

POINTS = frozenset(
    {
        "raftBeforeSave",
        "raftAfterSave",
        "raftBeforeApplySnap",
        "raftAfterApplySnap",
        "beforeApply",
        "afterApply",
        "snapshotDuringSend",
        "snapshotDuringReceive",
        "compactBeforeCommitBatch",
        "compactAfterCommitBatch",
        "beforeSendWatchResponse",
    }
)

_ENTRY = re.compile(
    r"^(?P<name>\w+)=(?P<action>crash|enospc|pause\((?P<seconds>[0-9.]+)\))(?:@(?P<at>\d+))?$"
)


@dataclass
class Failpoint:
    """One armed point: what it does and from which index (or hit count) on."""

    action: str  # "crash", "pause" or "enospc"
    at: int = 0
    seconds: float = 0.0
    hits: int = 0  # times reached, for points that pass no index

    def fire(self) -> None:
        if self.action == "crash":
            os._exit(CRASH_EXIT_CODE)
        if self.action == "pause":
            time.sleep(self.seconds)
            return
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC) + " (failpoint)")


def parse(spec: str) -> dict[str, Failpoint]:
    """Parse an ``ETCDPY_FAILPOINTS`` value; a malformed entry or unknown name is a ValueError."""
    armed: dict[str, Failpoint] = {}
    for raw in spec.split(";"):
        entry = raw.strip()
        if not entry:
            continue
        match = _ENTRY.match(entry)
        if match is None:
            raise ValueError(f"bad failpoint {entry!r}: want name=crash|enospc|pause(SECONDS)[@N]")
        name = match["name"]
        if name not in POINTS:
            raise ValueError(f"unknown failpoint {name!r}: known points are {', '.join(sorted(POINTS))}")
        action = match["action"].split("(")[0]
        armed[name] = Failpoint(action, int(match["at"] or 0), float(match["seconds"] or 0.0))
    return armed


_armed: dict[str, Failpoint] = parse(os.environ.get(ENV, ""))


def hit(name: str, index: int | None = None) -> None:
    """Reach failpoint `name` (at raft `index`, if the point passes one): fire it if armed."""
    point = _armed.get(name)
    if point is None:
        return
    if index is None:
        point.hits += 1
        index = point.hits
    if index >= point.at:
        point.fire()


def arm(spec: str) -> None:
    """Replace the armed points (in-process tests; servers read ``ETCDPY_FAILPOINTS`` at import)."""
    global _armed
    _armed = parse(spec)
