"""AuthStore: users, roles, the enabled flag and the auth revision, as applied through Raft.

The applied state of auth (etcd's auth/store.go), kept in the ``a`` keyspace of the
member's LevelDB and written in the apply batch (so with the applied index, and in
raft snapshots)::

    a e          b"\\x01" when auth is enabled
    a v          the auth revision, 8 bytes big-endian (absent: 1, as a new etcd store)
    a u <name>   authpb.User (bcrypt hash of its password, never the password)
    a r <name>   authpb.Role

Each mutation bumps the revision where etcd's does (everything but enabling and
authenticating) and rebuilds the `PermissionIndex`.  A copy of the state lives in
memory, re-read by `reload` after a snapshot replaced the database.

`handlers` apply the auth request kinds; `layer` is the permission check of the apply
chain (etcd's authApplierV3): it refuses a request whose user may not make it, or that
was checked against an older auth revision.  Both read only applied state; tokens are
the member's own business (`TokenProvider`), called when an ``authenticate`` entry is
applied, as etcd assigns its tokens.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import grpc
from google.protobuf.message import Message

from etcdpy.api import errors
from etcdpy.api.authpb import auth_pb2
from etcdpy.api.etcdserverpb import raft_internal_pb2, rpc_pb2
from etcdpy.server import raft_requests as kinds
from etcdpy.server.apply import ApplyFn, RequestHandler
from etcdpy.server.auth.perms import PermissionIndex
from etcdpy.server.auth.tokens import TokenProvider
from etcdpy.server.mvcc.writer import Batch
from etcdpy.server.raft_requests import Request, RequestKind
from etcdpy.server.storage import schema
from etcdpy.server.storage.backend import Backend

log = logging.getLogger("etcdpy.server.auth")

ROOT = "root"  # the root user and the root role: enabling needs both, root may do everything

_ENABLED = schema.AUTH + b"e"
_REVISION = schema.AUTH + b"v"
_USERS = schema.AUTH + b"u"
_ROLES = schema.AUTH + b"r"

# etcd's needAdminPermission: the auth calls only root makes (get of a user or a role has its own rule).
ADMIN_KINDS: frozenset[RequestKind] = frozenset(
    kinds.RequestKind(name)
    for name in (
        "auth_enable",
        "auth_disable",
        "auth_user_add",
        "auth_user_delete",
        "auth_user_change_password",
        "auth_user_grant_role",
        "auth_user_revoke_role",
        "auth_role_add",
        "auth_role_grant_permission",
        "auth_role_revoke_permission",
        "auth_role_delete",
        "auth_user_list",
        "auth_role_list",
    )
)


@dataclass(frozen=True)
class AuthInfo:
    """Who makes a request, and the auth revision its permission was checked against (0: nobody)."""

    username: str = ""
    revision: int = 0


NOBODY = AuthInfo()


def _name(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


class AuthStore:
    """The applied auth state of one member; single writer (the applier), read by the services."""

    def __init__(
        self, backend: Backend, tokens: TokenProvider, *, lease_keys: Callable[[int], Iterable[bytes]]
    ):
        """`lease_keys(id)`: the keys attached to a lease (revoking deletes them: it needs write access)."""
        self.backend = backend
        self.tokens = tokens
        self.lease_keys = lease_keys
        self.enabled = False
        self.revision = 1
        self.users: dict[str, auth_pb2.User] = {}
        self.roles: dict[str, auth_pb2.Role] = {}
        self.index = PermissionIndex()
        self._entry_index = 0  # raft index of the entry being applied (simple tokens carry it)
        self.reload()

    # ---- loading ----

    def reload(self) -> None:
        """Re-read the state from the backend (start, and after a snapshot replaced the database)."""
        db = self.backend.db
        self.enabled = db.get(_ENABLED) == b"\x01"
        raw = db.get(_REVISION)
        self.revision = int.from_bytes(raw, "big") if raw is not None else 1
        self.users = {
            _name(key[len(_USERS) :]): auth_pb2.User.FromString(value)
            for key, value in db.iterator(prefix=_USERS)
        }
        self.roles = {
            _name(key[len(_ROLES) :]): auth_pb2.Role.FromString(value)
            for key, value in db.iterator(prefix=_ROLES)
        }
        self.index.rebuild(self.users.values(), self.roles)
        if self.enabled:
            self.tokens.enable()
        else:
            self.tokens.disable()

    # ---- permission checks (etcd's isOpPermitted, IsAdminPermitted) ----

    def check_op(self, info: AuthInfo, key: bytes, range_end: bytes, *, write: bool) -> None:
        """Raise unless `info`'s user may read (write) `key` or [key, range_end), as etcd's isOpPermitted."""
        if not self.enabled:
            return
        if info.revision == 0:
            raise errors.ErrUserEmpty()
        if info.revision < self.revision:
            raise errors.ErrAuthOldRevision()
        user = self.users.get(info.username)
        if user is None:
            raise errors.ErrPermissionDenied()
        if ROOT in user.roles:
            return
        if not self.index.allowed(info.username, key, range_end, write=write):
            raise errors.ErrPermissionDenied()

    def check_admin(self, info: AuthInfo) -> None:
        """Raise unless `info`'s user has the root role (nothing to check while auth is off)."""
        if not self.enabled:
            return
        if not info.username:
            raise errors.ErrUserEmpty()
        user = self.users.get(info.username)
        if user is None:
            raise errors.ErrUserNotFound()
        if ROOT not in user.roles:
            raise errors.ErrPermissionDenied()

    def check_txn(self, info: AuthInfo, txn: rpc_pb2.TxnRequest) -> None:
        """Every compare (read), then every operation of both branches, as etcd's checkTxnAuth."""
        for cmp in txn.compare:
            self.check_op(info, cmp.key, cmp.range_end, write=False)
        for op in (*txn.success, *txn.failure):
            which = op.WhichOneof("request")
            if which == "request_range":
                self.check_op(info, op.request_range.key, op.request_range.range_end, write=False)
            elif which == "request_put":
                self.check_op(info, op.request_put.key, b"", write=True)
            elif which == "request_delete_range":
                req = op.request_delete_range
                if req.prev_kv:
                    self.check_op(info, req.key, req.range_end, write=False)
                self.check_op(info, req.key, req.range_end, write=True)
            elif which == "request_txn":
                self.check_txn(info, op.request_txn)

    def check_lease_keys(self, info: AuthInfo, lease_id: int) -> None:
        """Write access to every key attached to the lease (revoking it deletes them)."""
        for key in self.lease_keys(lease_id):
            self.check_op(info, key, b"", write=True)

    def has_role(self, username: str, role: str) -> bool:
        user = self.users.get(username)
        return user is not None and role in user.roles

    def password_of(self, name: str) -> tuple[bytes, int]:
        """(bcrypt hash of `name`'s password, the auth revision now), or etcd's CheckPassword error."""
        if not self.enabled:
            raise errors.ErrAuthNotEnabled()
        user = self.users.get(name)
        if user is None:
            raise errors.ErrAuthFailed()
        if user.options.no_password:
            # etcd's ErrNoPasswordUser, which its error table lacks: it reaches clients as UNKNOWN.
            raise errors.UnknownEtcdError(
                grpc.StatusCode.UNKNOWN,
                "auth: authentication failed, password was given for no password user",
            )
        return user.password, self.revision

    # ---- the apply chain ----

    def layer(self, batch: Batch, request: Request, apply_next: ApplyFn) -> Message:
        """The permission check of the apply chain (etcd's authApplierV3), then the rest of the chain."""
        header = request.header
        info = AuthInfo(header.username, header.auth_revision)
        kind = request.kind
        body = request.body
        if kind in ADMIN_KINDS:
            self.check_admin(info)
        elif kind == kinds.PUT:
            assert isinstance(body, rpc_pb2.PutRequest)
            self.check_op(info, body.key, b"", write=True)
            if body.lease:
                self.check_lease_keys(info, body.lease)
            if body.prev_kv:
                self.check_op(info, body.key, b"", write=False)
        elif kind == kinds.RANGE:
            assert isinstance(body, rpc_pb2.RangeRequest)
            self.check_op(info, body.key, body.range_end, write=False)
        elif kind == kinds.DELETE_RANGE:
            assert isinstance(body, rpc_pb2.DeleteRangeRequest)
            self.check_op(info, body.key, body.range_end, write=True)
            if body.prev_kv:
                self.check_op(info, body.key, body.range_end, write=False)
        elif kind == kinds.TXN:
            assert isinstance(body, rpc_pb2.TxnRequest)
            self.check_txn(info, body)
        elif kind == kinds.LEASE_REVOKE:
            assert isinstance(body, rpc_pb2.LeaseRevokeRequest)
            self.check_lease_keys(info, body.ID)
        elif kind == kinds.RequestKind("auth_user_get"):
            assert isinstance(body, rpc_pb2.AuthUserGetRequest)
            if body.name != info.username:
                self.check_admin(info)
        elif kind == kinds.RequestKind("auth_role_get"):
            assert isinstance(body, rpc_pb2.AuthRoleGetRequest)
            if not (self.enabled and self.has_role(info.username, body.role)):
                self.check_admin(info)
        self._entry_index = request.raft_index
        return apply_next(batch, request)

    def handlers(self) -> dict[RequestKind, RequestHandler]:
        """Applier handlers of the auth request kinds."""
        k = kinds.RequestKind
        return {
            k("auth_enable"): self._enable,
            k("auth_disable"): self._disable,
            k("auth_status"): self._status,
            k("authenticate"): self._authenticate,
            k("auth_user_add"): self._user_add,
            k("auth_user_delete"): self._user_delete,
            k("auth_user_get"): self._user_get,
            k("auth_user_change_password"): self._user_change_password,
            k("auth_user_grant_role"): self._user_grant_role,
            k("auth_user_revoke_role"): self._user_revoke_role,
            k("auth_user_list"): self._user_list,
            k("auth_role_list"): self._role_list,
            k("auth_role_add"): self._role_add,
            k("auth_role_delete"): self._role_delete,
            k("auth_role_get"): self._role_get,
            k("auth_role_grant_permission"): self._role_grant_permission,
            k("auth_role_revoke_permission"): self._role_revoke_permission,
        }

    # ---- writes (inside the apply batch) ----

    def _commit(self, batch: Batch) -> None:
        """Bump the revision, store it and rebuild the permission index (every mutation but enable)."""
        self.revision += 1
        batch.wb.put(_REVISION, self.revision.to_bytes(8, "big"))
        self.index.rebuild(self.users.values(), self.roles)

    def _put_user(self, batch: Batch, user: auth_pb2.User) -> None:
        self.users[_name(user.name)] = user
        batch.wb.put(_USERS + user.name, user.SerializeToString())

    def _put_role(self, batch: Batch, role: auth_pb2.Role) -> None:
        self.roles[_name(role.name)] = role
        batch.wb.put(_ROLES + role.name, role.SerializeToString())

    def _enable(self, batch: Batch, req: rpc_pb2.AuthEnableRequest) -> rpc_pb2.AuthEnableResponse:
        if not self.enabled:
            root = self.users.get(ROOT)
            if root is None:
                raise errors.ErrRootUserNotExist()
            if ROOT not in root.roles:
                raise errors.ErrRootRoleNotExist()
            batch.wb.put(_ENABLED, b"\x01")
            self.enabled = True
            self.tokens.enable()
            log.info("enabled authentication")
        return rpc_pb2.AuthEnableResponse()

    def _disable(self, batch: Batch, req: rpc_pb2.AuthDisableRequest) -> rpc_pb2.AuthDisableResponse:
        if self.enabled:
            batch.wb.put(_ENABLED, b"\x00")
            self.enabled = False
            self._commit(batch)
            self.tokens.disable()
            log.info("disabled authentication")
        return rpc_pb2.AuthDisableResponse()

    def _status(self, batch: Batch, req: rpc_pb2.AuthStatusRequest) -> rpc_pb2.AuthStatusResponse:
        return rpc_pb2.AuthStatusResponse(enabled=self.enabled, authRevision=self.revision)

    def _authenticate(
        self, batch: Batch, req: raft_internal_pb2.InternalAuthenticateRequest
    ) -> rpc_pb2.AuthenticateResponse:
        if not self.enabled:
            raise errors.ErrAuthNotEnabled()
        user = self.users.get(req.name)
        if user is None or user.options.no_password:
            raise errors.ErrAuthFailed()
        token = self.tokens.assign(req.name, self.revision, req.simple_token, self._entry_index)
        return rpc_pb2.AuthenticateResponse(token=token)

    def _user_add(self, batch: Batch, req: rpc_pb2.AuthUserAddRequest) -> rpc_pb2.AuthUserAddResponse:
        if not req.name:
            raise errors.ErrUserEmpty()
        if req.name in self.users:
            raise errors.ErrUserAlreadyExist()
        user = auth_pb2.User(name=req.name.encode(), options=req.options)
        if not req.options.no_password:
            # The receiving member hashed it (etcd 3.5's hashedPassword): no password is in the log.
            user.password = base64.b64decode(req.hashedPassword)
        self._put_user(batch, user)
        self._commit(batch)
        return rpc_pb2.AuthUserAddResponse()

    def _user_delete(
        self, batch: Batch, req: rpc_pb2.AuthUserDeleteRequest
    ) -> rpc_pb2.AuthUserDeleteResponse:
        if self.enabled and req.name == ROOT:
            raise errors.ErrInvalidAuthMgmt()
        if req.name not in self.users:
            raise errors.ErrUserNotFound()
        del self.users[req.name]
        batch.wb.delete(_USERS + req.name.encode())
        self._commit(batch)
        self.tokens.invalidate_user(req.name)
        return rpc_pb2.AuthUserDeleteResponse()

    def _user_change_password(
        self, batch: Batch, req: rpc_pb2.AuthUserChangePasswordRequest
    ) -> rpc_pb2.AuthUserChangePasswordResponse:
        user = self.users.get(req.name)
        if user is None:
            raise errors.ErrUserNotFound()
        updated = auth_pb2.User()
        updated.CopyFrom(user)
        updated.password = base64.b64decode(req.hashedPassword)
        self._put_user(batch, updated)
        self._commit(batch)
        self.tokens.invalidate_user(req.name)
        return rpc_pb2.AuthUserChangePasswordResponse()

    def _user_grant_role(
        self, batch: Batch, req: rpc_pb2.AuthUserGrantRoleRequest
    ) -> rpc_pb2.AuthUserGrantRoleResponse:
        user = self.users.get(req.user)
        if user is None:
            raise errors.ErrUserNotFound()
        if req.role != ROOT and req.role not in self.roles:
            raise errors.ErrRoleNotFound()
        if req.role in user.roles:
            return rpc_pb2.AuthUserGrantRoleResponse()  # already granted: nothing changes, as etcd
        updated = auth_pb2.User()
        updated.CopyFrom(user)
        roles = sorted([*user.roles, req.role])
        del updated.roles[:]
        updated.roles.extend(roles)
        self._put_user(batch, updated)
        self._commit(batch)
        return rpc_pb2.AuthUserGrantRoleResponse()

    def _user_revoke_role(
        self, batch: Batch, req: rpc_pb2.AuthUserRevokeRoleRequest
    ) -> rpc_pb2.AuthUserRevokeRoleResponse:
        if self.enabled and req.name == ROOT and req.role == ROOT:
            raise errors.ErrInvalidAuthMgmt()
        user = self.users.get(req.name)
        if user is None:
            raise errors.ErrUserNotFound()
        if req.role not in user.roles:
            raise errors.ErrRoleNotGranted()
        self._put_user(batch, _without_role(user, req.role))
        self._commit(batch)
        return rpc_pb2.AuthUserRevokeRoleResponse()

    def _user_get(self, batch: Batch, req: rpc_pb2.AuthUserGetRequest) -> rpc_pb2.AuthUserGetResponse:
        user = self.users.get(req.name)
        if user is None:
            raise errors.ErrUserNotFound()
        return rpc_pb2.AuthUserGetResponse(roles=user.roles)

    def _user_list(self, batch: Batch, req: rpc_pb2.AuthUserListRequest) -> rpc_pb2.AuthUserListResponse:
        return rpc_pb2.AuthUserListResponse(users=sorted(self.users, key=str.encode))

    def _role_list(self, batch: Batch, req: rpc_pb2.AuthRoleListRequest) -> rpc_pb2.AuthRoleListResponse:
        return rpc_pb2.AuthRoleListResponse(roles=sorted(self.roles, key=str.encode))

    def _role_add(self, batch: Batch, req: rpc_pb2.AuthRoleAddRequest) -> rpc_pb2.AuthRoleAddResponse:
        if not req.name:
            raise errors.ErrRoleEmpty()
        if req.name in self.roles:
            raise errors.ErrRoleAlreadyExist()
        self._put_role(batch, auth_pb2.Role(name=req.name.encode()))
        self._commit(batch)
        return rpc_pb2.AuthRoleAddResponse()

    def _role_delete(
        self, batch: Batch, req: rpc_pb2.AuthRoleDeleteRequest
    ) -> rpc_pb2.AuthRoleDeleteResponse:
        if self.enabled and req.role == ROOT:
            raise errors.ErrInvalidAuthMgmt()
        if req.role not in self.roles:
            raise errors.ErrRoleNotFound()
        del self.roles[req.role]
        batch.wb.delete(_ROLES + req.role.encode())
        for user in list(self.users.values()):
            if req.role in user.roles:
                self._put_user(batch, _without_role(user, req.role))
        self._commit(batch)
        return rpc_pb2.AuthRoleDeleteResponse()

    def _role_get(self, batch: Batch, req: rpc_pb2.AuthRoleGetRequest) -> rpc_pb2.AuthRoleGetResponse:
        role = self.roles.get(req.role)
        if role is None:
            raise errors.ErrRoleNotFound()
        return rpc_pb2.AuthRoleGetResponse(perm=role.keyPermission)

    def _role_grant_permission(
        self, batch: Batch, req: rpc_pb2.AuthRoleGrantPermissionRequest
    ) -> rpc_pb2.AuthRoleGrantPermissionResponse:
        role = self.roles.get(req.name)
        if role is None:
            raise errors.ErrRoleNotFound()
        if not req.HasField("perm"):
            raise errors.ErrPermissionNotGiven()
        perms = list(role.keyPermission)
        for perm in perms:
            if perm.key == req.perm.key and perm.range_end == req.perm.range_end:
                perm.permType = req.perm.permType
                break
        else:
            perm = auth_pb2.Permission(
                key=req.perm.key, range_end=req.perm.range_end, permType=req.perm.permType
            )
            perms.append(perm)
            perms.sort(key=lambda p: p.key)  # stable, as etcd's sort of a sorted list plus one
        self._put_role(batch, auth_pb2.Role(name=role.name, keyPermission=perms))
        self._commit(batch)
        return rpc_pb2.AuthRoleGrantPermissionResponse()

    def _role_revoke_permission(
        self, batch: Batch, req: rpc_pb2.AuthRoleRevokePermissionRequest
    ) -> rpc_pb2.AuthRoleRevokePermissionResponse:
        role = self.roles.get(req.role)
        if role is None:
            raise errors.ErrRoleNotFound()
        kept = [p for p in role.keyPermission if p.key != req.key or p.range_end != req.range_end]
        if len(kept) == len(role.keyPermission):
            raise errors.ErrPermissionNotGranted()
        self._put_role(batch, auth_pb2.Role(name=role.name, keyPermission=kept))
        self._commit(batch)
        return rpc_pb2.AuthRoleRevokePermissionResponse()


def _without_role(user: auth_pb2.User, role: str) -> auth_pb2.User:
    """A copy of `user` that no longer has `role`."""
    updated = auth_pb2.User()
    updated.CopyFrom(user)
    del updated.roles[:]
    updated.roles.extend(r for r in user.roles if r != role)
    return updated
