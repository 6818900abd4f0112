"""Auth, user and role results in each ``-w`` format, with etcdctl's exact bytes.

etcdctl 3.4 (printer_simple.go, printer_fields.go, printer.go):

- simple: one sentence per change (``User alice created``), the names for the
  lists, a role's permissions under ``KV Read:`` and ``KV Write:``;
- json and protobuf: the response message, as for every call;
- fields: the header, plus the permissions of ``role get`` and the names of
  ``role list``; ``user get``, ``user list`` and ``auth status`` have no fields
  printer (exit 4), nor does any of them a table.

``auth status`` is etcdctl 3.5's (``Authentication Status: true`` and the auth
revision); 3.4 has no such command.
"""

from __future__ import annotations

from google.protobuf.message import Message

from etcdpy.api.authpb import auth_pb2
from etcdpy.api.etcdserverpb import rpc_pb2 as pb
from etcdpy.cli.printers import MessagePrinter, Printer
from etcdpy.cli.printers.fields import FieldsPrinter
from etcdpy.cli.printers.goformat import go_quote
from etcdpy.cli.printers.simple import SimplePrinter
from etcdpy.client.requests import prefix_range_end

OPEN_ENDED = b"\x00"
_PERM_NAMES = {
    auth_pb2.Permission.READ: "READ",
    auth_pb2.Permission.WRITE: "WRITE",
    auth_pb2.Permission.READWRITE: "READWRITE",
}


def _changed(printer: Printer, response: Message, sentence: bytes | str) -> None:
    """A change: a sentence (simple), the message (json, protobuf) or the header (fields)."""
    if isinstance(printer, SimplePrinter):
        printer.output.line(sentence)
    elif isinstance(printer, MessagePrinter):
        printer.message(response)
    elif isinstance(printer, FieldsPrinter):
        printer.header(getattr(response, "header"))  # noqa: B009 (every auth response has one)
    else:
        raise printer.unsupported()


def _listed(printer: Printer, response: Message, names: list[str]) -> None:
    """A list of names: one per line (simple), the message (json, protobuf); no fields, no table."""
    if isinstance(printer, SimplePrinter):
        for name in names:
            printer.output.line(name)
    elif isinstance(printer, MessagePrinter):
        printer.message(response)
    else:
        raise printer.unsupported()


def auth_status(printer: Printer, response: pb.AuthStatusResponse) -> None:
    if isinstance(printer, SimplePrinter):
        printer.output.line(f"Authentication Status: {'true' if response.enabled else 'false'}")
        printer.output.line(f"AuthRevision: {response.authRevision}")
    elif isinstance(printer, MessagePrinter):
        printer.message(response)
    else:
        raise printer.unsupported()


def user_add(printer: Printer, name: str, response: pb.AuthUserAddResponse) -> None:
    _changed(printer, response, f"User {name} created")


def user_delete(printer: Printer, name: str, response: pb.AuthUserDeleteResponse) -> None:
    _changed(printer, response, f"User {name} deleted")


def user_change_password(printer: Printer, response: pb.AuthUserChangePasswordResponse) -> None:
    _changed(printer, response, "Password updated")


def user_grant_role(printer: Printer, user: str, role: str, response: pb.AuthUserGrantRoleResponse) -> None:
    _changed(printer, response, f"Role {role} is granted to user {user}")


def user_revoke_role(printer: Printer, user: str, role: str, response: pb.AuthUserRevokeRoleResponse) -> None:
    _changed(printer, response, f"Role {role} is revoked from user {user}")


def user_get(printer: Printer, name: str, response: pb.AuthUserGetResponse) -> None:
    if isinstance(printer, SimplePrinter):
        printer.output.line(f"User: {name}")
        printer.output.line("Roles:" + "".join(f" {role}" for role in response.roles))
    elif isinstance(printer, MessagePrinter):
        printer.message(response)
    else:
        raise printer.unsupported()


def user_list(printer: Printer, response: pb.AuthUserListResponse) -> None:
    _listed(printer, response, list(response.users))


def role_add(printer: Printer, role: str, response: pb.AuthRoleAddResponse) -> None:
    _changed(printer, response, f"Role {role} created")


def role_delete(printer: Printer, role: str, response: pb.AuthRoleDeleteResponse) -> None:
    _changed(printer, response, f"Role {role} deleted")


def role_grant_permission(printer: Printer, role: str, response: pb.AuthRoleGrantPermissionResponse) -> None:
    _changed(printer, response, f"Role {role} updated")


def role_revoke_permission(
    printer: Printer, role: str, key: bytes, range_end: bytes, response: pb.AuthRoleRevokePermissionResponse
) -> None:
    """``key`` and ``range_end`` as the command line gave them (not as the server stored them)."""
    name = role.encode("utf-8", "surrogateescape")
    if not range_end:
        sentence = b"Permission of key " + key + b" is revoked from role " + name
    elif range_end != OPEN_ENDED:
        sentence = b"Permission of range [" + key + b", " + range_end + b") is revoked from role " + name
    else:
        sentence = b"Permission of range [" + key + b", <open ended> is revoked from role " + name
    _changed(printer, response, sentence)


def role_list(printer: Printer, response: pb.AuthRoleListResponse) -> None:
    if isinstance(printer, FieldsPrinter):
        printer.header(response.header)
        printer.output.line('"Roles" :' + "".join(f" {go_quote(role)}" for role in response.roles))
    else:
        _listed(printer, response, list(response.roles))


def role_get(printer: Printer, role: str, response: pb.AuthRoleGetResponse) -> None:
    if isinstance(printer, SimplePrinter):
        printer.output.line(f"Role {role}")
        for title, types in (
            ("KV Read:", (auth_pb2.Permission.READ, auth_pb2.Permission.READWRITE)),
            ("KV Write:", (auth_pb2.Permission.WRITE, auth_pb2.Permission.READWRITE)),
        ):
            printer.output.line(title)
            for perm in response.perm:
                if perm.permType in types:
                    printer.output.line(permission_line(perm))
    elif isinstance(printer, MessagePrinter):
        printer.message(response)
    elif isinstance(printer, FieldsPrinter):
        printer.header(response.header)
        for perm in response.perm:
            # Go's Println puts a space between the label (which ends in one) and the type.
            printer.output.line(f'"PermType" :  {_PERM_NAMES[perm.permType]}')
            printer.quoted("Key", bytes(perm.key))
            printer.quoted("RangeEnd", bytes(perm.range_end))
    else:
        raise printer.unsupported()


def permission_line(perm: auth_pb2.Permission) -> bytes:
    """One permission of ``role get``: a tab, then the key, or its range and whether it is a prefix."""
    key, end = bytes(perm.key), bytes(perm.range_end)
    if not end:
        return b"\t" + key
    line = b"\t[" + key + (b", " + end + b")" if end != OPEN_ENDED else b", <open ended>")
    if prefix_range_end(key) == end:
        line += b" (prefix " + key + b")"
    return line
