"""etcdctl's global flags: definitions, Go-style value types, ``ETCDCTL_*`` variables.

Global flags are accepted before the command (``etcdpy -w json get foo``) and
after it (``etcdpy get foo -w json``), as with etcdctl's cobra flags; a flag
given after the command wins.  Every global flag can also come from
``ETCDCTL_<FLAG>`` (upper case, ``-`` as ``_``), read at the group level only.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any, TypeVar

import click

from etcdpy.cli.durations import DurationError, format_duration_ns, parse_duration
from etcdpy.cli.errors import ExitCode
from etcdpy.client.endpoints import split_endpoints

F = TypeVar("F", bound=Callable[..., Any])

ENV_PREFIX = "ETCDCTL_"


class GoDuration(click.ParamType[float]):
    """A Go duration flag value (``2s``, ``500ms``), converted to seconds."""

    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        if isinstance(value, float):
            return value
        try:
            return parse_duration(str(value))
        except DurationError as err:
            error = invalid_argument(value, param, str(err))
            error.ctx = ctx
            raise error from None


class GoInt64(click.ParamType[int]):
    """A Go int64 flag value, with strconv's error text."""

    name = "int"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        text = str(value)
        reason = None
        if not re.fullmatch(r"[+-]?[0-9]+", text):
            reason = "invalid syntax"
        elif not -(2**63) <= int(text) < 2**63:
            reason = "value out of range"
        if reason is not None:
            error = invalid_argument(text, param, f'strconv.ParseInt: parsing "{text}": {reason}')
            error.ctx = ctx
            raise error
        return int(text)


class FlagError(click.UsageError):
    """A flag cobra could not parse: etcdctl prints the usage and the error line twice (exit 1)."""

    exit_code = int(ExitCode.ERROR)


def invalid_argument(value: Any, param: click.Parameter | None, reason: str) -> FlagError:
    """cobra/pflag's message for a flag value that does not parse."""
    flag = param.opts[0] if param is not None and param.opts else "?"
    return FlagError(f'invalid argument "{value}" for "{flag}" flag: {reason}')


@dataclass(frozen=True)
class GlobalFlag:
    """One etcdctl global flag."""

    name: str  # the long flag without dashes; the dest is name with "_"
    default: Any
    help: str
    short: str | None = None
    kind: str = "str"  # str | bool | duration | list

    @property
    def dest(self) -> str:
        return self.name.replace("-", "_")

    @property
    def envvar(self) -> str:
        return ENV_PREFIX + self.dest.upper()


GLOBAL_FLAGS = (
    GlobalFlag("endpoints", "127.0.0.1:2379", "gRPC endpoints (comma separated)", kind="list"),
    GlobalFlag(
        "write-out", "simple", "set the output format (fields, json, protobuf, simple, table)", short="-w"
    ),
    GlobalFlag("hex", False, "print byte strings as hex encoded strings", kind="bool"),
    GlobalFlag("dial-timeout", "2s", "dial timeout for client connections", kind="duration"),
    GlobalFlag(
        "command-timeout", "5s", "timeout for short running command (excluding dial timeout)", kind="duration"
    ),
    GlobalFlag("keepalive-time", "2s", "keepalive time for client connections", kind="duration"),
    GlobalFlag("keepalive-timeout", "6s", "keepalive timeout for client connections", kind="duration"),
    GlobalFlag("insecure-transport", True, "disable transport security for client connections", kind="bool"),
    GlobalFlag(
        "insecure-skip-tls-verify",
        False,
        "skip server certificate verification"
        " (CAUTION: this option should be enabled only for testing purposes)",
        kind="bool",
    ),
    GlobalFlag(
        "insecure-discovery", True, "accept insecure SRV records describing cluster endpoints", kind="bool"
    ),
    GlobalFlag("cert", "", "identify secure client using this TLS certificate file"),
    GlobalFlag("key", "", "identify secure client using this TLS key file"),
    GlobalFlag("cacert", "", "verify certificates of TLS-enabled secure servers using this CA bundle"),
    GlobalFlag("user", "", "username[:password] for authentication (prompt if password is not supplied)"),
    GlobalFlag(
        "password",
        "",
        "password for authentication (if this option is used, --user option shouldn't include password)",
    ),
    GlobalFlag(
        "discovery-srv", "", "domain name to query for SRV records describing cluster endpoints", short="-d"
    ),
    GlobalFlag("discovery-srv-name", "", "service name to query when using DNS discovery"),
    GlobalFlag("debug", False, "enable client-side debug logging", kind="bool"),
    GlobalFlag(
        "decode",
        False,
        "with -w json: indented output, keys and values as text (etcdpy only)",
        kind="bool",
    ),
)
BOOL_FLAGS = frozenset(f.name for f in GLOBAL_FLAGS if f.kind == "bool")
KNOWN_ENV = frozenset(f.envvar for f in GLOBAL_FLAGS) | {
    "ETCDCTL_API",
    "ETCDCTL_WATCH_KEY",
    "ETCDCTL_WATCH_RANGE_END",
}


def _option(flag: GlobalFlag, *, at_group: bool) -> Callable[[F], F]:
    decls = [f"--{flag.name}"] + ([flag.short] if flag.short else [])
    if flag.kind == "bool" and flag.default:
        decls = [f"--{flag.name}/--no-{flag.name}"]
    kwargs: dict[str, Any] = {"help": flag.help, "envvar": flag.envvar if at_group else None}
    if flag.kind == "bool":
        kwargs.update(is_flag=True, default=flag.default if at_group else None)
    else:
        kwargs.update(default=flag.default if at_group else None, show_default=at_group)
        if flag.kind == "duration":
            kwargs["type"] = GoDuration()
    if at_group:
        kwargs["show_envvar"] = True
    else:
        kwargs.update(expose_value=False, callback=_remember_override, hidden=True)
    return click.option(*decls, **kwargs)


def group_options(func: F) -> F:
    """Attach every global flag (with its ETCDCTL_* variable) to the top-level group."""
    for flag in reversed(GLOBAL_FLAGS):
        func = _option(flag, at_group=True)(func)
    return func


def command_options(func: F) -> F:
    """Accept the global flags after a command name too, as cobra does (hidden in its help)."""
    for flag in reversed(GLOBAL_FLAGS):
        func = _option(flag, at_group=False)(func)
    return func


def _remember_override(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    # Leaf-level copies default to None and read no environment: not None means "given here".
    if value is not None:
        # The group's callback stored its state (which holds the GlobalOptions) as the root obj.
        options = getattr(ctx.find_root().obj, "options", None)
        if isinstance(options, GlobalOptions):
            options.set(param.name or "", value)
    return value


@dataclass
class GlobalOptions:
    """The resolved global flags, shared by every command through click's context."""

    endpoints: list[str] = field(default_factory=lambda: ["127.0.0.1:2379"])
    write_out: str = "simple"
    hex: bool = False
    dial_timeout: float = 2.0
    command_timeout: float = 5.0
    keepalive_time: float = 2.0
    keepalive_timeout: float = 6.0
    insecure_transport: bool = True
    insecure_skip_tls_verify: bool = False
    insecure_discovery: bool = True
    cert: str = ""
    key: str = ""
    cacert: str = ""
    user: str = ""
    password: str = ""
    discovery_srv: str = ""
    discovery_srv_name: str = ""
    debug: bool = False
    decode: bool = False

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> GlobalOptions:
        options = cls()
        for f in fields(cls):
            if f.name in params and params[f.name] is not None:
                options.set(f.name, params[f.name])
        return options

    def set(self, name: str, value: Any) -> None:
        if name == "endpoints" and isinstance(value, str):
            value = split_endpoints(value)
        setattr(self, name, value)


def debug_lines(options: GlobalOptions) -> list[str]:
    """``--debug``: every global flag as ``ETCDCTL_<NAME>=<value>``, sorted and Go-formatted like etcdctl.

    Unlike etcdctl, a password is never printed, only whether one is set.
    """
    lines = []
    for flag in sorted(GLOBAL_FLAGS, key=lambda f: f.envvar):
        value = getattr(options, flag.dest)
        if flag.kind == "duration":
            text = format_duration_ns(round(value * 1e9))
        elif flag.kind == "bool":
            text = "true" if value else "false"
        elif flag.kind == "list":
            text = "[" + ",".join(value) + "]"
        elif flag.name == "password" and value:
            text = "<set>"
        else:
            text = str(value)
        lines.append(f"{flag.envvar}={text}")
    return lines


def check_environment(ctx: click.Context) -> tuple[str | None, list[str]]:
    """etcdctl's pkg/flags rules: (fatal message, warnings) for the ``ETCDCTL_*`` variables.

    A flag given both ways is fatal; a variable that names no global flag warns.
    """
    fatal = None
    for flag in GLOBAL_FLAGS:
        source = ctx.get_parameter_source(flag.dest)
        if source == click.core.ParameterSource.COMMANDLINE and flag.envvar in os.environ:
            fatal = (
                f'pkg/flags: conflicting environment variable "{flag.envvar}" is shadowed by corresponding '
                "command-line flag (either unset environment variable or disable flag)"
            )
            break
    warnings = [
        f"pkg/flags: unrecognized environment variable {name}={os.environ[name]}"
        for name in sorted(os.environ)
        if name.startswith(ENV_PREFIX) and name not in KNOWN_ENV
    ]
    return fatal, warnings
