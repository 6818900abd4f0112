"""What a member does when its storage fails while it runs: say what happened, tell the cluster, stop.

A failed durable write (the raft log batch) or apply batch leaves the member
unable to go on safely: raft's next step assumes the write happened.  So the
write path ends, nothing that was not saved is acknowledged (a write is
acknowledged only after it is durable and applied), and the member stops with a
message that names the failure and the way out.  Before stopping it asks the
other members, through their client API, to raise an alarm for it:

- disk full (ENOSPC, from the OS or from LevelDB): NOSPACE, so the whole
  cluster refuses the writes that need space until an operator frees space,
  restarts the member and disarms the alarm (`etcdpy alarm disarm`);
- LevelDB reporting corruption: CORRUPT, so the cluster stops taking writes
  until an operator replaces the member (remove, wipe, add back) and disarms.

A single-member cluster has nobody to tell: the message alone remains.
"""

from __future__ import annotations

import errno
import logging
from dataclasses import dataclass
from pathlib import Path

import grpc
import plyvel

from etcdpy.api.etcdserverpb import rpc_pb2, rpc_pb2_grpc
from etcdpy.server.consensus.membership import Cluster
from etcdpy.server.storage.backend import recovery_advice
from etcdpy.server.tls import Dialer

log = logging.getLogger("etcdpy.server")

PEER_ALARM_TIMEOUT_SECONDS = 5.0


@dataclass(frozen=True)
class StorageFailure:
    """A storage failure the member understands: the alarm it warrants and what to tell the operator."""

    alarm: rpc_pb2.AlarmType
    message: str


def _is_disk_full(exc: BaseException) -> bool:
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return True
    # LevelDB reports the OS error inside its own IOError text.
    return isinstance(exc, plyvel.IOError) and "No space left on device" in str(exc)


def classify(exc: BaseException, data_dir: str) -> StorageFailure | None:
    """The StorageFailure `exc` (the write path's exception, or one it was raised from) is, or None."""
    seen: BaseException | None = exc
    while seen is not None:
        if _is_disk_full(seen):
            return StorageFailure(
                rpc_pb2.NOSPACE,
                f"no space left on device writing the data dir {data_dir} ({seen}): the member stops; "
                "nothing it could not save was acknowledged. Free space, restart it, then disarm the "
                "NOSPACE alarm (`etcdpy alarm disarm`).",
            )
        if isinstance(seen, plyvel.CorruptionError):
            return StorageFailure(
                rpc_pb2.CORRUPT,
                f"data dir {data_dir} is corrupt: LevelDB reported {seen} while the member ran; "
                + recovery_advice(Path(data_dir)),
            )
        seen = seen.__cause__ or seen.__context__
    return None


async def raise_alarm_through_peers(cluster: Cluster, alarm: rpc_pb2.AlarmType, dialer: Dialer) -> str | None:
    """Ask the other members, one client URL at a time (dialed by `dialer`), to raise `alarm` for this member.

    Returns the URL that accepted it, or None if no member could (none reachable, or no quorum).
    """
    request = rpc_pb2.AlarmRequest(
        action=rpc_pb2.AlarmRequest.ACTIVATE, memberID=cluster.local_id, alarm=alarm
    )
    for member_id, member in cluster.members.items():
        if member_id == cluster.local_id:
            continue
        for url in member.clientURLs:
            try:
                channel = await dialer.channel(url)
            except OSError as exc:  # an auto-tls dial could not fetch the member's certificate
                log.warning("member at %s could not raise the alarm: %s", url, exc)
                continue
            async with channel:
                stub = rpc_pb2_grpc.MaintenanceStub(channel)  # type: ignore[no-untyped-call]
                try:
                    await stub.Alarm(request, timeout=PEER_ALARM_TIMEOUT_SECONDS)
                except grpc.aio.AioRpcError as exc:
                    log.warning("member at %s could not raise the alarm: %s", url, exc.details())
                    continue
                return url
    return None
