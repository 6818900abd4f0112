"""``-w table``: etcdctl's tablewriter tables, plus a ``get`` table (beyond etcdctl).

etcdctl renders with olekukonko/tablewriter: upper-cased headers centred, cells
right-aligned, ``+---+`` borders.  `render_table` reproduces that layout.  etcdctl
has no table for ``get``; etcdpy prints one with tabulate (key, value, create and
mod revision, version, lease).
"""

from __future__ import annotations

from collections.abc import Sequence

from tabulate import tabulate

from etcdpy.api.etcdserverpb import rpc_pb2 as pb
from etcdpy.cli.printers import DBStatus, EndpointHashKV, EndpointHealth, EndpointStatus, Printer
from etcdpy.cli.printers import rows as tables


def _center(text: str, width: int) -> str:
    gap = width - len(text)
    left = gap // 2
    return " " * left + text + " " * (gap - left)


def render_table(table: tables.Table) -> str:
    """tablewriter's rendering with SetAlignment(ALIGN_RIGHT), as etcdctl configures it."""
    header, rows = table
    titles = [h.upper() for h in header]
    widths = [max([len(titles[i])] + [len(row[i]) for row in rows]) for i in range(len(titles))]
    border = "+" + "+".join("-" * (w + 2) for w in widths) + "+"
    lines = [border, "|" + "|".join(f" {_center(t, w)} " for t, w in zip(titles, widths, strict=True)) + "|"]
    lines.append(border)
    for row in rows:
        lines.append("|" + "|".join(f" {c.rjust(w)} " for c, w in zip(row, widths, strict=True)) + "|")
    lines.append(border)
    return "\n".join(lines) + "\n"


def _text(data: bytes) -> str:
    return data.decode("utf-8", "backslashreplace")


class TablePrinter(Printer):
    """Tables for member list, the endpoint commands and (etcdpy only) get."""

    name = "table"

    def _table(self, table: tables.Table) -> None:
        self.output.write(render_table(table))

    def member_list(self, response: pb.MemberListResponse) -> None:
        self._table(tables.member_list_table(response))

    def endpoint_status(self, statuses: Sequence[EndpointStatus]) -> None:
        self._table(tables.endpoint_status_table(statuses))

    def endpoint_hashkv(self, hashes: Sequence[EndpointHashKV]) -> None:
        self._table(tables.endpoint_hashkv_table(hashes))

    def endpoint_health(self, healths: Sequence[EndpointHealth]) -> None:
        self._table(tables.endpoint_health_table(healths))

    def get(self, response: pb.RangeResponse) -> None:
        header = ["KEY", "VALUE", "CREATE REVISION", "MOD REVISION", "VERSION", "LEASE"]
        rows = [
            [
                _text(kv.key),
                _text(kv.value),
                kv.create_revision,
                kv.mod_revision,
                kv.version,
                f"{kv.lease:x}" if kv.lease else "",
            ]
            for kv in response.kvs
        ]
        self.output.line(tabulate(rows, headers=header, tablefmt="psql", disable_numparse=True))

    def db_status(self, status: DBStatus) -> None:
        self._table(tables.db_status_table(status))
