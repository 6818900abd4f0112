"""Lease and watch results in each ``-w`` format, with etcdctl 3.4's exact bytes.

etcdctl prints clientv3's lease structs, which embed the response header: its
JSON flattens the header fields into the object (``{"cluster_id":...,"ID":...}``)
and its protobuf output is the header's bytes alone.  A watch response prints as
clientv3's WatchResponse struct in JSON and as the response's header and events
in protobuf.  ``table`` supports none of these (exit 4), as in etcdctl.
"""

from __future__ import annotations

import base64

from etcdpy.api.etcdserverpb import rpc_pb2 as pb
from etcdpy.api.mvccpb import kv_pb2
from etcdpy.cli.printers import Printer
from etcdpy.cli.printers.fields import FieldsPrinter
from etcdpy.cli.printers.goformat import go_json, go_json_string
from etcdpy.cli.printers.jsonfmt import JSONPrinter
from etcdpy.cli.printers.simple import SimplePrinter

EVENT_TYPES = {kv_pb2.Event.PUT: "PUT", kv_pb2.Event.DELETE: "DELETE"}


def _bytes_json(printer: JSONPrinter, data: bytes) -> str:
    """A []byte in Go's JSON (base64), or readable text under --decode."""
    if printer.decode:
        try:
            return go_json_string(data.decode("utf-8"))
        except UnicodeDecodeError:
            pass
    return go_json_string(base64.b64encode(data).decode("ascii"))


def _flat_json(printer: JSONPrinter, header: pb.ResponseHeader, *fields: str) -> None:
    """A clientv3 struct embedding ``*pb.ResponseHeader``: header fields first, then ``fields``."""
    inner = go_json(header)[1:-1]
    printer.emit("{" + ",".join(part for part in (inner, *fields) if part) + "}")


def _header_only(printer: Printer, header: pb.ResponseHeader) -> bool:
    """protobuf: etcdctl writes the embedded header's bytes; False for the other formats."""
    if printer.name != "protobuf":
        return False
    printer.output.write(header.SerializeToString())
    return True


def _fields_header(printer: FieldsPrinter, header: pb.ResponseHeader, *fields: tuple[str, int]) -> None:
    printer.header(header)
    for name, value in fields:
        printer.field(name, value)


def lease_grant(printer: Printer, response: pb.LeaseGrantResponse) -> None:
    if isinstance(printer, SimplePrinter):
        printer.output.line(f"lease {response.ID:016x} granted with TTL({response.TTL}s)")
    elif isinstance(printer, JSONPrinter):
        _flat_json(
            printer,
            response.header,
            f'"ID":{response.ID}',
            f'"TTL":{response.TTL}',
            f'"Error":{go_json_string(response.error)}',
        )
    elif isinstance(printer, FieldsPrinter):
        _fields_header(printer, response.header, ("ID", response.ID), ("TTL", response.TTL))
    elif not _header_only(printer, response.header):
        raise printer.unsupported()


def lease_revoke(printer: Printer, lease_id: int, response: pb.LeaseRevokeResponse) -> None:
    if isinstance(printer, SimplePrinter):
        printer.output.line(f"lease {lease_id:016x} revoked")
    elif isinstance(printer, JSONPrinter):
        printer.message(response)
    elif isinstance(printer, FieldsPrinter):
        printer.header(response.header)
    elif not _header_only(printer, response.header):
        raise printer.unsupported()


def lease_time_to_live(printer: Printer, response: pb.LeaseTimeToLiveResponse, keys: bool) -> None:
    if isinstance(printer, SimplePrinter):
        if response.grantedTTL == 0 and response.TTL == -1:
            printer.output.line(f"lease {response.ID:016x} already expired")
            return
        text = (
            f"lease {response.ID:016x} granted with TTL({response.grantedTTL}s), remaining({response.TTL}s)"
        )
        line = text.encode()
        if keys:  # Go's %v of a []string: [a b]
            line += b", attached keys([" + b" ".join(bytes(k) for k in response.keys) + b"])"
        printer.output.line(line)
    elif isinstance(printer, JSONPrinter):
        keys_json = "[" + ",".join(_bytes_json(printer, bytes(k)) for k in response.keys) + "]"
        _flat_json(
            printer,
            response.header,
            f'"id":{response.ID}',
            f'"ttl":{response.TTL}',
            f'"granted-ttl":{response.grantedTTL}',
            f'"keys":{keys_json if response.keys else "null"}',
        )
    elif isinstance(printer, FieldsPrinter):
        _fields_header(
            printer,
            response.header,
            ("ID", response.ID),
            ("TTL", response.TTL),
            ("GrantedTTL", response.grantedTTL),
        )
        for key in response.keys:
            printer.quoted("Key", bytes(key))
    elif not _header_only(printer, response.header):
        raise printer.unsupported()


def lease_leases(printer: Printer, response: pb.LeaseLeasesResponse) -> None:
    if isinstance(printer, SimplePrinter):
        printer.output.line(f"found {len(response.leases)} leases")
        for lease in response.leases:
            printer.output.line(f"{lease.ID:016x}")
    elif isinstance(printer, JSONPrinter):
        leases = ",".join(f'{{"id":{lease.ID}}}' for lease in response.leases)
        _flat_json(printer, response.header, f'"leases":[{leases}]' if response.leases else '"leases":null')
    elif isinstance(printer, FieldsPrinter):
        _fields_header(printer, response.header, *(("ID", lease.ID) for lease in response.leases))
    elif not _header_only(printer, response.header):
        raise printer.unsupported()


def lease_keep_alive(printer: Printer, response: pb.LeaseKeepAliveResponse) -> None:
    if isinstance(printer, SimplePrinter):
        printer.output.line(f"lease {response.ID:016x} keepalived with TTL({response.TTL})")
    elif isinstance(printer, JSONPrinter):
        _flat_json(printer, response.header, f'"ID":{response.ID}', f'"TTL":{response.TTL}')
    elif isinstance(printer, FieldsPrinter):
        _fields_header(printer, response.header, ("ID", response.ID), ("TTL", response.TTL))
    elif not _header_only(printer, response.header):
        raise printer.unsupported()


def watch_response(printer: Printer, response: pb.WatchResponse, *, events_nil: bool = False) -> None:
    """One watch response as ``etcdctl watch`` prints it (created responses are never printed).

    ``events_nil``: the response clientv3 makes of a refused watch (no events slice: JSON ``null``).
    """
    if isinstance(printer, SimplePrinter):
        for event in response.events:
            printer.output.line(EVENT_TYPES[event.type])
            if event.HasField("prev_kv"):
                printer.kv(event.prev_kv)
            printer.kv(event.kv)
    elif isinstance(printer, JSONPrinter):
        # clientv3 hands etcdctl every response with a non-nil (so never "null") events slice.
        events = "[" + ",".join(printer.encode(event) for event in response.events) + "]"
        if events_nil:
            events = "null"
        printer.emit(
            f'{{"Header":{printer.encode(response.header)},"Events":{events},'
            f'"CompactRevision":{response.compact_revision},'
            f'"Canceled":{"true" if response.canceled else "false"},'
            f'"Created":{"true" if response.created else "false"}}}'
        )
    elif isinstance(printer, FieldsPrinter):
        printer.header(response.header)
        for event in response.events:
            printer.output.line(f'"Type" : {EVENT_TYPES[event.type]}')
            if event.HasField("prev_kv"):
                printer.kv("Prev", event.prev_kv)
            printer.kv("", event.kv)
    elif printer.name == "protobuf":
        # etcdctl's pbPrinter copies these fields of clientv3's WatchResponse (not the ids).
        copied = pb.WatchResponse(
            header=response.header,
            events=response.events,
            compact_revision=response.compact_revision,
            canceled=response.canceled,
            created=response.created,
        )
        printer.output.write(copied.SerializeToString())
    else:
        raise printer.unsupported()
