"""Auth calls of `Client`: enabling auth, users, roles and their key-range permissions.

The calls are etcd's Auth service one for one.  Reads (get, list, status) may
be sent again after a lost answer; every change is sent at most once (a
repeated ``user add`` would answer "user name already exists" for a user the
first attempt created).  Authentication itself (the token every other call
carries) is `Client.authenticate`.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any, Protocol

import grpc
from google.protobuf.message import Message

from etcdpy.api.authpb import auth_pb2
from etcdpy.api.etcdserverpb import rpc_pb2 as pb
from etcdpy.api.etcdserverpb import rpc_pb2_grpc as rpc
from etcdpy.client.requests import Bytes, _key_range
from etcdpy.client.transport import Retry, UnaryMethod, stub_method


class PermissionType(enum.IntEnum):
    """What a permission allows on its key range (authpb.Permission.Type)."""

    READ = auth_pb2.Permission.READ
    WRITE = auth_pb2.Permission.WRITE
    READWRITE = auth_pb2.Permission.READWRITE

    @classmethod
    def parse(cls, text: str) -> PermissionType:
        """etcdctl's permission type argument (``read``, ``write``, ``readwrite``, any case).

        ValueError with clientv3's text ("invalid permission type: <text>") otherwise.
        """
        try:
            return cls[text.upper()]
        except KeyError:
            raise ValueError(f"invalid permission type: {text}") from None


def auth_method(name: str) -> Callable[[grpc.Channel], UnaryMethod]:
    """The Auth stub method ``name``, bound to a channel when called with one."""
    return stub_method(rpc.AuthStub, name)


class _Calls(Protocol):
    def _call(
        self,
        method: Callable[[grpc.Channel], UnaryMethod],
        request: Message,
        timeout: float | None,
        *,
        retry: Retry,
        endpoint: str | None = None,
    ) -> Any: ...


class AuthMixin:
    """The Auth service's calls (mixed into `Client`)."""

    def auth_enable(self: _Calls, *, timeout: float | None = None) -> pb.AuthEnableResponse:
        """Turn auth on (the root user must exist and have the root role)."""
        response: pb.AuthEnableResponse = self._call(
            auth_method("AuthEnable"), pb.AuthEnableRequest(), timeout, retry=Retry.AT_MOST_ONCE
        )
        return response

    def auth_disable(self: _Calls, *, timeout: float | None = None) -> pb.AuthDisableResponse:
        """Turn auth off (root only, while it is on)."""
        response: pb.AuthDisableResponse = self._call(
            auth_method("AuthDisable"), pb.AuthDisableRequest(), timeout, retry=Retry.AT_MOST_ONCE
        )
        return response

    def auth_status(self: _Calls, *, timeout: float | None = None) -> pb.AuthStatusResponse:
        """Whether auth is on, and the auth store's revision (etcd 3.5's call; etcd 3.4 lacks it)."""
        response: pb.AuthStatusResponse = self._call(
            auth_method("AuthStatus"), pb.AuthStatusRequest(), timeout, retry=Retry.READ
        )
        return response

    def user_add(
        self: _Calls,
        name: str,
        password: str = "",
        *,
        no_password: bool = False,
        timeout: float | None = None,
    ) -> pb.AuthUserAddResponse:
        """Add a user; ``no_password`` makes one that can only authenticate by its TLS certificate."""
        request = pb.AuthUserAddRequest(
            name=name, password=password, options=auth_pb2.UserAddOptions(no_password=no_password)
        )
        response: pb.AuthUserAddResponse = self._call(
            auth_method("UserAdd"), request, timeout, retry=Retry.AT_MOST_ONCE
        )
        return response

    def user_get(self: _Calls, name: str, *, timeout: float | None = None) -> pb.AuthUserGetResponse:
        """The roles granted to a user."""
        response: pb.AuthUserGetResponse = self._call(
            auth_method("UserGet"), pb.AuthUserGetRequest(name=name), timeout, retry=Retry.READ
        )
        return response

    def user_list(self: _Calls, *, timeout: float | None = None) -> pb.AuthUserListResponse:
        """Every user's name, sorted."""
        response: pb.AuthUserListResponse = self._call(
            auth_method("UserList"), pb.AuthUserListRequest(), timeout, retry=Retry.READ
        )
        return response

    def user_delete(self: _Calls, name: str, *, timeout: float | None = None) -> pb.AuthUserDeleteResponse:
        """Delete a user."""
        response: pb.AuthUserDeleteResponse = self._call(
            auth_method("UserDelete"), pb.AuthUserDeleteRequest(name=name), timeout, retry=Retry.AT_MOST_ONCE
        )
        return response

    def user_change_password(
        self: _Calls, name: str, password: str, *, timeout: float | None = None
    ) -> pb.AuthUserChangePasswordResponse:
        """Set a user's password (the member hashes it before it is replicated)."""
        response: pb.AuthUserChangePasswordResponse = self._call(
            auth_method("UserChangePassword"),
            pb.AuthUserChangePasswordRequest(name=name, password=password),
            timeout,
            retry=Retry.AT_MOST_ONCE,
        )
        return response

    def user_grant_role(
        self: _Calls, user: str, role: str, *, timeout: float | None = None
    ) -> pb.AuthUserGrantRoleResponse:
        """Grant a role to a user."""
        response: pb.AuthUserGrantRoleResponse = self._call(
            auth_method("UserGrantRole"),
            pb.AuthUserGrantRoleRequest(user=user, role=role),
            timeout,
            retry=Retry.AT_MOST_ONCE,
        )
        return response

    def user_revoke_role(
        self: _Calls, user: str, role: str, *, timeout: float | None = None
    ) -> pb.AuthUserRevokeRoleResponse:
        """Take a role back from a user."""
        response: pb.AuthUserRevokeRoleResponse = self._call(
            auth_method("UserRevokeRole"),
            pb.AuthUserRevokeRoleRequest(name=user, role=role),
            timeout,
            retry=Retry.AT_MOST_ONCE,
        )
        return response

    def role_add(self: _Calls, name: str, *, timeout: float | None = None) -> pb.AuthRoleAddResponse:
        """Add a role without permissions."""
        response: pb.AuthRoleAddResponse = self._call(
            auth_method("RoleAdd"), pb.AuthRoleAddRequest(name=name), timeout, retry=Retry.AT_MOST_ONCE
        )
        return response

    def role_get(self: _Calls, name: str, *, timeout: float | None = None) -> pb.AuthRoleGetResponse:
        """A role's permissions."""
        response: pb.AuthRoleGetResponse = self._call(
            auth_method("RoleGet"), pb.AuthRoleGetRequest(role=name), timeout, retry=Retry.READ
        )
        return response

    def role_list(self: _Calls, *, timeout: float | None = None) -> pb.AuthRoleListResponse:
        """Every role's name, sorted."""
        response: pb.AuthRoleListResponse = self._call(
            auth_method("RoleList"), pb.AuthRoleListRequest(), timeout, retry=Retry.READ
        )
        return response

    def role_delete(self: _Calls, name: str, *, timeout: float | None = None) -> pb.AuthRoleDeleteResponse:
        """Delete a role (and take it back from every user)."""
        response: pb.AuthRoleDeleteResponse = self._call(
            auth_method("RoleDelete"), pb.AuthRoleDeleteRequest(role=name), timeout, retry=Retry.AT_MOST_ONCE
        )
        return response

    def role_grant_permission(
        self: _Calls,
        name: str,
        key: Bytes,
        range_end: Bytes | None = None,
        perm_type: PermissionType = PermissionType.READWRITE,
        *,
        prefix: bool = False,
        from_key: bool = False,
        timeout: float | None = None,
    ) -> pb.AuthRoleGrantPermissionResponse:
        """Allow a role ``perm_type`` on a key, a range ``[key, range_end)``, a prefix or all keys from one.

        ``range_end`` b"\\x00" is open ended, as in etcd; ``prefix``/``from_key``
        compute it as for ranges.
        """
        k, end = _permission_range(key, range_end, prefix, from_key)
        request = pb.AuthRoleGrantPermissionRequest(
            name=name, perm=auth_pb2.Permission(permType=perm_type.name, key=k, range_end=end)
        )
        response: pb.AuthRoleGrantPermissionResponse = self._call(
            auth_method("RoleGrantPermission"), request, timeout, retry=Retry.AT_MOST_ONCE
        )
        return response

    def role_revoke_permission(
        self: _Calls,
        name: str,
        key: Bytes,
        range_end: Bytes | None = None,
        *,
        prefix: bool = False,
        from_key: bool = False,
        timeout: float | None = None,
    ) -> pb.AuthRoleRevokePermissionResponse:
        """Take back the permission a role has on exactly this key or range."""
        k, end = _permission_range(key, range_end, prefix, from_key)
        request = pb.AuthRoleRevokePermissionRequest(role=name, key=k, range_end=end)
        response: pb.AuthRoleRevokePermissionResponse = self._call(
            auth_method("RoleRevokePermission"), request, timeout, retry=Retry.AT_MOST_ONCE
        )
        return response


def _permission_range(
    key: Bytes, range_end: Bytes | None, prefix: bool, from_key: bool
) -> tuple[bytes, bytes]:
    """A permission's key and range end; an empty key is b"\\x00" (etcd's intervals start there)."""
    k, end = _key_range(key, range_end, prefix, from_key)
    return (k or b"\x00"), end
