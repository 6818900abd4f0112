"""The live watch view on a terminal: a header, one coloured line per event, reconnects that miss nothing.

Used by ``watch`` when stdout is a terminal and the output format is the
default; piped output stays etcdctl's.  After a broken stream the client's
watch resumes on another endpoint from the revision after the last one shown
(the events in between are replayed, not lost); the view says so.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable

from rich.console import Console
from rich.text import Text

from etcdpy.api.errors import EtcdError
from etcdpy.api.etcdserverpb import rpc_pb2 as pb
from etcdpy.api.mvccpb import kv_pb2
from etcdpy.client import Client, Endpoint
from etcdpy.client.watch import Watch

VALUE_WIDTH = 60
_STYLES = {kv_pb2.Event.PUT: ("PUT", "green"), kv_pb2.Event.DELETE: ("DEL", "red")}


def _shown(data: bytes, width: int) -> str:
    text = data.decode("utf-8", "backslashreplace")
    return text if len(text) <= width else text[: width - 1] + "…"


def event_line(event: kv_pb2.Event, at: datetime.datetime) -> Text:
    """``HH:MM:SS.mmm  PUT  key = value  @rev`` with the type coloured."""
    name, style = _STYLES[event.type]
    line = Text()
    line.append(at.strftime("%H:%M:%S.%f")[:-3] + "  ", style="dim")
    line.append(f"{name:<4}", style=f"bold {style}")
    line.append(_shown(bytes(event.kv.key), 40), style="bold")
    if event.type == kv_pb2.Event.PUT:
        line.append(" = ")
        line.append(_shown(bytes(event.kv.value), VALUE_WIDTH))
    line.append(f"  @{event.kv.mod_revision}", style="cyan")
    return line


def run_view(
    console: Console,
    client: Client,
    request: pb.WatchCreateRequest,
    on_open: Callable[[Watch], None] | None = None,
) -> str:
    """Show events until the watch is cancelled by the server (or closed); returns the cancel reason.

    The client's watch fails over by itself; the view says when it does and where it resumed.
    ``on_open`` is given the stream as soon as it exists (to close it from another thread).
    """
    current = client.get(b"\x00", serializable=True, count_only=True).header.revision
    scope = request.key.decode("utf-8", "backslashreplace") + (
        f" .. {request.range_end.decode('utf-8', 'backslashreplace')}" if request.range_end else ""
    )

    def lost(err: EtcdError) -> None:
        console.print(Text(f"connection to {stream.endpoint.text} lost ({err.text})", style="yellow"))

    def resumed(endpoint: Endpoint, revision: int) -> None:
        at = f"revision {revision}" if revision else "the current revision"
        console.print(Text(f"reconnected to {endpoint.text}, resuming at {at}", style="yellow"))

    stream = client.watch(request, on_lost=lost, on_resumed=resumed)
    if on_open is not None:
        on_open(stream)
    console.print(
        Text(f"watching {scope} on {stream.endpoint.text}, current revision {current}", style="bold blue")
    )
    try:
        for response in stream:
            now = datetime.datetime.now()
            if response.canceled:
                return response.cancel_reason or "watch cancelled"
            if not response.events and not response.created and response.header.revision:
                console.print(Text(f"progress: revision {response.header.revision}", style="dim"))
            for event in response.events:
                console.print(event_line(event, now))
    finally:
        stream.close()
    return "watch cancelled"
