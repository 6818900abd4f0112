"""The live watch view on a terminal: a header, one coloured line per event, reconnects that miss nothing.

Used by ``watch`` when stdout is a terminal and the output format is the
default; piped output stays etcdctl's.  After a broken stream the view
re-creates the watch from the revision after the last one shown, so the
events in between are replayed, not lost, and says so.
"""

from __future__ import annotations

import datetime
import time

from rich.console import Console
from rich.text import Text

from etcdpy.api.errors import EtcdError
from etcdpy.api.etcdserverpb import rpc_pb2 as pb
from etcdpy.api.mvccpb import kv_pb2
from etcdpy.client import Client

VALUE_WIDTH = 60
RETRY_SECONDS = 1.0
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


def run_view(console: Console, client: Client, endpoint: str, request: pb.WatchCreateRequest) -> str:
    """Show events until the watch is cancelled by the server; returns the cancel reason."""
    current = client.get(b"\x00", serializable=True, count_only=True).header.revision
    scope = request.key.decode("utf-8", "backslashreplace") + (
        f" .. {request.range_end.decode('utf-8', 'backslashreplace')}" if request.range_end else ""
    )
    console.print(Text(f"watching {scope} on {endpoint}, current revision {current}", style="bold blue"))
    last = request.start_revision - 1 if request.start_revision > 0 else current
    while True:
        resume = pb.WatchCreateRequest()
        resume.CopyFrom(request)
        resume.start_revision = last + 1
        stream = client.watch(resume)
        try:
            for response in stream:
                now = datetime.datetime.now()
                if response.canceled:
                    return response.cancel_reason or "watch cancelled"
                if not response.events and not response.created and response.header.revision:
                    console.print(Text(f"progress: revision {response.header.revision}", style="dim"))
                    last = max(last, response.header.revision)
                for event in response.events:
                    console.print(event_line(event, now))
                    last = max(last, event.kv.mod_revision)
        except EtcdError as err:
            console.print(
                Text(f"connection lost ({err.text}); resuming from revision {last + 1}", style="yellow")
            )
            time.sleep(RETRY_SECONDS)
        finally:
            stream.close()
