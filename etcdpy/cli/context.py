"""The state every command shares through click's context object: flags, output, client."""

from __future__ import annotations

import datetime
from pathlib import Path

import click

from etcdpy.cli import passwords
from etcdpy.cli.errors import CliError, ExitCode
from etcdpy.cli.options import GlobalOptions
from etcdpy.cli.printers import Output, Printer, make_printer
from etcdpy.client import Client, EtcdError, TLSConfig


class CliState:
    """Global options plus the lazily created client and printer of one invocation."""

    def __init__(self, options: GlobalOptions, output: Output) -> None:
        self.options = options
        self.output = output
        self._client: Client | None = None
        # (user, password) once resolved: a password prompt happens at most once per invocation.
        self._auth: tuple[str | None, str | None] | None = None

    def client(self, endpoints: list[str] | None = None) -> Client:
        """The client for ``--endpoints`` (closed when the command ends)."""
        if endpoints is not None:
            return self._new_client(endpoints)
        if self._client is None:
            self._client = self._new_client(self.options.endpoints)
        return self._client

    def _new_client(self, endpoints: list[str]) -> Client:
        o = self.options
        for name in ("cert", "key", "cacert"):
            if getattr(o, name) == "" and _given(name):
                raise CliError(ExitCode.BAD_ARGS, f"empty string is passed to --{name} option")
        user, password = self._credentials()
        # etcdctl: any TLS file, or --insecure-transport=false, makes every endpoint TLS, and only then
        # does --insecure-skip-tls-verify apply (an https:// endpoint alone verifies regardless).
        always = bool(o.cacert or o.cert or o.key) or not o.insecure_transport
        tls = TLSConfig(
            cacert=Path(o.cacert) if o.cacert else None,
            cert=Path(o.cert) if o.cert else None,
            key=Path(o.key) if o.key else None,
            always=always,
            insecure_skip_verify=always and o.insecure_skip_tls_verify,
        )
        try:
            client = Client(
                endpoints,
                dial_timeout=o.dial_timeout,
                command_timeout=o.command_timeout,
                keepalive_time=o.keepalive_time,
                keepalive_timeout=o.keepalive_timeout,
                user=user,
                password=password,
                tls=tls,
            )
        except ValueError as err:  # a bad endpoint, or a TLS file etcdctl refuses (TLSFileError)
            raise CliError(ExitCode.BAD_ARGS, str(err)) from None
        click.get_current_context().call_on_close(client.close)
        try:
            # etcd's Go client authenticates while connecting; etcdctl reports a failure there as a
            # bad connection (exit 2).
            client.authenticate(o.dial_timeout)
        except EtcdError as err:
            raise CliError(ExitCode.BAD_CONNECTION, err.text) from None
        return client

    def _credentials(self) -> tuple[str | None, str | None]:
        """etcdctl's --user/--password rules: ``name:password``, or a separate --password, or a prompt."""
        if self._auth is None:
            o = self.options
            if not o.user:
                self._auth = (None, None)
            elif o.password:
                self._auth = (o.user, o.password)
            else:
                name, sep, password = o.user.partition(":")
                # etcdctl asks on stdout, reading stdin without echo when it is a terminal.
                self._auth = (name, password) if sep else (o.user, passwords.ask(self.output, "Password: "))
        return self._auth

    def printer(self) -> Printer:
        """The printer for ``-w``/``--hex``/``--decode``."""
        return make_printer(
            self.options.write_out, self.output, hex_bytes=self.options.hex, decode=self.options.decode
        )

    def log(self, level: str, message: str) -> None:
        """A capnslog-style line on stderr, as etcdctl's pkg/flags writes them."""
        stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S.%f")
        self.output.err_line(f"{stamp} {level} | {message}")


def _given(name: str) -> bool:
    ctx: click.Context | None = click.get_current_context()
    while ctx is not None:
        if ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE:
            return True
        ctx = ctx.parent
    return False


pass_state = click.make_pass_decorator(CliState)
