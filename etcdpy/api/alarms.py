"""Alarms in etcd's text form, shared by the server (Status.errors) and the CLI (``alarm list``)."""

from __future__ import annotations

from etcdpy.api.etcdserverpb import rpc_pb2


def alarm_name(alarm: int) -> str:
    """The AlarmType's name (``NOSPACE``), or its number for a value etcd's enum does not know."""
    try:
        return rpc_pb2.AlarmType.Name(alarm)
    except ValueError:
        return str(alarm)


def alarm_text(member: rpc_pb2.AlarmMember) -> str:
    """An AlarmMember as etcd prints it: ``memberID:12 alarm:NOSPACE `` (Go's compact text form).

    Go's compact text format writes each set field followed by a space and omits zero values.
    """
    parts = ""
    if member.memberID:
        parts += f"memberID:{member.memberID} "
    if member.alarm:
        parts += f"alarm:{alarm_name(member.alarm)} "
    return parts
