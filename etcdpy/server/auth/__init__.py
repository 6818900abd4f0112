"""Auth: users, roles, key-range permissions and tokens (etcd's auth package).

- `store`: `AuthStore`, the applied state (``a`` keyspace), its apply handlers and the
  apply chain's permission layer;
- `perms`: `PermissionIndex`, each user's merged key ranges (etcd's range_perm_cache);
- `tokens`: simple and JWT token providers, and the ``--auth-token`` parser;
- `gate`: `AuthGate`, the serving side: a call's credentials, the checks made before
  reading or proposing, bcrypt off the event loop, the failed-attempt budget.
"""

from etcdpy.server.auth.gate import CREDENTIALS, AuthGate, Credentials
from etcdpy.server.auth.perms import PermissionIndex
from etcdpy.server.auth.store import ROOT, AuthInfo, AuthStore
from etcdpy.server.auth.tokens import AuthOptionError, JwtTokens, SimpleTokens, TokenProvider, token_provider

__all__ = [
    "CREDENTIALS",
    "ROOT",
    "AuthGate",
    "AuthInfo",
    "AuthOptionError",
    "AuthStore",
    "Credentials",
    "JwtTokens",
    "PermissionIndex",
    "SimpleTokens",
    "TokenProvider",
    "token_provider",
]
