"""Auth set up on a fresh server for the client and CLI tests: root, and alice with readwrite on ``app/``."""

from __future__ import annotations

from etcdpy.client import Client
from etcdpy.client.auth import PermissionType

ROOT = ("root", "rootpw")
ALICE = ("alice", "apw")
PREFIX = "app/"


def enable_auth(endpoint: str) -> None:
    """Add root (with the root role) and alice (role ``app``: readwrite on app/), then enable auth."""
    with Client(endpoint) as admin:
        admin.user_add(*ROOT)
        admin.role_add("root")
        admin.user_grant_role("root", "root")
        admin.role_add("app")
        admin.role_grant_permission("app", PREFIX, perm_type=PermissionType.READWRITE, prefix=True)
        admin.user_add(*ALICE)
        admin.user_grant_role("alice", "app")
        admin.auth_enable()
