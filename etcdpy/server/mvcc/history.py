"""Reading the change history back as mvccpb.Events, for watchers catching up from a past revision."""

from __future__ import annotations

from etcdpy.api import errors
from etcdpy.api.mvccpb import kv_pb2
from etcdpy.server.mvcc import layout
from etcdpy.server.mvcc.layout import Revision
from etcdpy.server.mvcc.reader import Reader


def read_events(
    reader: Reader, start: int, max_revisions: int, *, prev_kv: bool = False
) -> list[tuple[int, list[kv_pb2.Event]]]:
    """Events of revisions ``start``..``reader.rev``, grouped per revision, at most ``max_revisions`` groups.

    The events equal what `Applier` published when the revisions were written
    (prev_kv only if asked, at one extra lookup per event).  ErrCompacted if
    ``start`` is below the compact revision: events there may be gone.
    Reads only the reader's view, never an unwritten batch.
    """
    if start < reader.compact_rev:
        raise errors.ErrCompacted()
    start = max(start, 1)
    out: list[tuple[int, list[kv_pb2.Event]]] = []
    stop = layout.history_key(Revision(reader.rev + 1))
    for hkey, record in reader.view.iterator(start=layout.history_key(Revision(start)), stop=stop):
        main = layout.history_rev(hkey).main
        if not out or out[-1][0] != main:
            if len(out) == max_revisions:
                break
            out.append((main, []))
        kind, kv_bytes = layout.decode_record(record)
        kv = kv_pb2.KeyValue.FromString(kv_bytes)
        event = kv_pb2.Event(
            type=kv_pb2.Event.DELETE if kind == layout.TOMBSTONE else kv_pb2.Event.PUT, kv=kv
        )
        if prev_kv:
            prev = reader.get_at(kv.key, main - 1) if main - 1 >= reader.compact_rev else None
            if prev is not None:
                event.prev_kv.CopyFrom(prev)
        out[-1][1].append(event)
    return out
