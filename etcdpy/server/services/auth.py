"""Auth service (/etcdserverpb.Auth), and `with_credentials`: a call's credentials for the checks.

Every request goes through the log, as in etcd; the checks are the apply chain's
(`AuthStore.layer`).  What the member that receives a call does first:

- UserAdd and UserChangePassword: the password is hashed here (bcrypt, on a thread) and
  only the hash is proposed, in etcd 3.5's ``hashedPassword`` field, so no password
  reaches the log, a snapshot or LevelDB;
- Authenticate: a linearizable barrier, the password checked here (on a thread, failed
  checks rate-limited), then an ``authenticate`` entry with the token's random part;
  repeated if the auth store changed between the check and the apply, as etcd does.
"""

from __future__ import annotations

import inspect
import types
from collections.abc import AsyncIterator, Callable
from typing import Any

from etcdpy.api.etcdserverpb import raft_internal_pb2, rpc_pb2, rpc_pb2_grpc
from etcdpy.server.auth.gate import CREDENTIALS, AuthGate, Credentials
from etcdpy.server.etcdserver import EtcdServer
from etcdpy.server.services.common import Context, answers_unimplemented, maps_etcd_errors, rpc_methods

TOKEN_METADATA_KEYS = ("token", "authorization")  # etcd's TokenFieldNameGRPC, TokenFieldNameSwagger
COMMON_NAME = "x509_common_name"
NO_CREDENTIALS = Credentials()  # neither a token nor a certificate


def credentials_of(context: Any, client_certs: bool = True) -> Credentials:
    """The token in the call's metadata, else (looked up when needed) its client certificate's common name.

    `client_certs`: whether the listener asks clients for a certificate at all. Without one there is
    no name to find, and grpc's auth context, which every proposal and read would otherwise build
    just to learn so, is not asked.
    """
    metadata = getattr(context, "invocation_metadata", None)
    pairs = tuple((metadata() if metadata is not None else None) or ())
    for key in TOKEN_METADATA_KEYS:
        for name, value in pairs:
            if name == key:
                return Credentials(token=value if isinstance(value, str) else value.decode())
    auth_context = getattr(context, "auth_context", None) if client_certs else None
    if auth_context is None:
        return NO_CREDENTIALS

    def common_name() -> str | None:
        names = auth_context().get(COMMON_NAME)
        return names[0].decode() if names else None

    return Credentials(common_name=common_name)


def with_credentials(servicer: object, base: type, *, client_certs: bool) -> Any:
    """`servicer`'s RPCs of the generated `base`, each run with its call's credentials in `CREDENTIALS`.

    `client_certs`: whether clients are asked for certificates (`credentials_of`).
    """
    methods: dict[str, Any] = {}
    for name, _generated in rpc_methods(base):
        handler = getattr(servicer, name)
        if inspect.isasyncgenfunction(handler):
            methods[name] = _streaming(handler, client_certs)
        else:
            methods[name] = _unary(handler, client_certs)
    return types.SimpleNamespace(**methods)


def _unary(handler: Callable[..., Any], client_certs: bool) -> Callable[..., Any]:
    async def call(request: Any, context: Any) -> Any:
        token = CREDENTIALS.set(credentials_of(context, client_certs))
        try:
            return await handler(request, context)
        finally:
            CREDENTIALS.reset(token)

    return call


def _streaming(
    handler: Callable[..., AsyncIterator[Any]], client_certs: bool
) -> Callable[..., AsyncIterator[Any]]:
    async def call(request: Any, context: Any) -> AsyncIterator[Any]:
        token = CREDENTIALS.set(credentials_of(context, client_certs))
        try:
            async for response in handler(request, context):
                yield response
        finally:
            CREDENTIALS.reset(token)

    return call


@answers_unimplemented
class AuthService(rpc_pb2_grpc.AuthServicer):
    """/etcdserverpb.Auth: every method proposes its request; passwords hashed or checked here first."""

    def __init__(self, server: EtcdServer, gate: AuthGate) -> None:
        self.server = server
        self.gate = gate

    async def _propose(self, **request: Any) -> Any:
        return await self.server.propose(raft_internal_pb2.InternalRaftRequest(**request))

    @maps_etcd_errors
    async def AuthEnable(
        self, request: rpc_pb2.AuthEnableRequest, context: Context
    ) -> rpc_pb2.AuthEnableResponse:
        return await self._propose(auth_enable=request)  # type: ignore[no-any-return]

    @maps_etcd_errors
    async def AuthDisable(
        self, request: rpc_pb2.AuthDisableRequest, context: Context
    ) -> rpc_pb2.AuthDisableResponse:
        return await self._propose(auth_disable=request)  # type: ignore[no-any-return]

    @maps_etcd_errors
    async def AuthStatus(
        self, request: rpc_pb2.AuthStatusRequest, context: Context
    ) -> rpc_pb2.AuthStatusResponse:
        return await self._propose(auth_status=request)  # type: ignore[no-any-return]

    @maps_etcd_errors
    async def Authenticate(
        self, request: rpc_pb2.AuthenticateRequest, context: Context
    ) -> rpc_pb2.AuthenticateResponse:
        await self.server.linearizable_barrier()
        while True:
            checked = await self.gate.check_password(request.name, request.password)
            internal = raft_internal_pb2.InternalAuthenticateRequest(
                name=request.name, simple_token=self.gate.store.tokens.new_prefix()
            )
            response: rpc_pb2.AuthenticateResponse = await self._propose(authenticate=internal)
            if checked == self.gate.store.revision:
                return response
            # The user or its password may have changed since the check: check again, as etcd does.

    @maps_etcd_errors
    async def UserAdd(
        self, request: rpc_pb2.AuthUserAddRequest, context: Context
    ) -> rpc_pb2.AuthUserAddResponse:
        if not request.options.no_password:
            request.hashedPassword = await self.gate.hash_password(request.password)
        request.password = ""
        return await self._propose(auth_user_add=request)  # type: ignore[no-any-return]

    @maps_etcd_errors
    async def UserGet(
        self, request: rpc_pb2.AuthUserGetRequest, context: Context
    ) -> rpc_pb2.AuthUserGetResponse:
        return await self._propose(auth_user_get=request)  # type: ignore[no-any-return]

    @maps_etcd_errors
    async def UserList(
        self, request: rpc_pb2.AuthUserListRequest, context: Context
    ) -> rpc_pb2.AuthUserListResponse:
        return await self._propose(auth_user_list=request)  # type: ignore[no-any-return]

    @maps_etcd_errors
    async def UserDelete(
        self, request: rpc_pb2.AuthUserDeleteRequest, context: Context
    ) -> rpc_pb2.AuthUserDeleteResponse:
        return await self._propose(auth_user_delete=request)  # type: ignore[no-any-return]

    @maps_etcd_errors
    async def UserChangePassword(
        self, request: rpc_pb2.AuthUserChangePasswordRequest, context: Context
    ) -> rpc_pb2.AuthUserChangePasswordResponse:
        request.hashedPassword = await self.gate.hash_password(request.password)
        request.password = ""
        return await self._propose(auth_user_change_password=request)  # type: ignore[no-any-return]

    @maps_etcd_errors
    async def UserGrantRole(
        self, request: rpc_pb2.AuthUserGrantRoleRequest, context: Context
    ) -> rpc_pb2.AuthUserGrantRoleResponse:
        return await self._propose(auth_user_grant_role=request)  # type: ignore[no-any-return]

    @maps_etcd_errors
    async def UserRevokeRole(
        self, request: rpc_pb2.AuthUserRevokeRoleRequest, context: Context
    ) -> rpc_pb2.AuthUserRevokeRoleResponse:
        return await self._propose(auth_user_revoke_role=request)  # type: ignore[no-any-return]

    @maps_etcd_errors
    async def RoleAdd(
        self, request: rpc_pb2.AuthRoleAddRequest, context: Context
    ) -> rpc_pb2.AuthRoleAddResponse:
        return await self._propose(auth_role_add=request)  # type: ignore[no-any-return]

    @maps_etcd_errors
    async def RoleGet(
        self, request: rpc_pb2.AuthRoleGetRequest, context: Context
    ) -> rpc_pb2.AuthRoleGetResponse:
        return await self._propose(auth_role_get=request)  # type: ignore[no-any-return]

    @maps_etcd_errors
    async def RoleList(
        self, request: rpc_pb2.AuthRoleListRequest, context: Context
    ) -> rpc_pb2.AuthRoleListResponse:
        return await self._propose(auth_role_list=request)  # type: ignore[no-any-return]

    @maps_etcd_errors
    async def RoleDelete(
        self, request: rpc_pb2.AuthRoleDeleteRequest, context: Context
    ) -> rpc_pb2.AuthRoleDeleteResponse:
        return await self._propose(auth_role_delete=request)  # type: ignore[no-any-return]

    @maps_etcd_errors
    async def RoleGrantPermission(
        self, request: rpc_pb2.AuthRoleGrantPermissionRequest, context: Context
    ) -> rpc_pb2.AuthRoleGrantPermissionResponse:
        return await self._propose(auth_role_grant_permission=request)  # type: ignore[no-any-return]

    @maps_etcd_errors
    async def RoleRevokePermission(
        self, request: rpc_pb2.AuthRoleRevokePermissionRequest, context: Context
    ) -> rpc_pb2.AuthRoleRevokePermissionResponse:
        return await self._propose(auth_role_revoke_permission=request)  # type: ignore[no-any-return]
