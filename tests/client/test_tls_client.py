"""The Python client and the recipes (Mutex, Election) over TLS with client certificates, against
etcd 3.4 and etcdpy.

`Client(tls=TLSConfig(...))` reads and checks its files when it is made (`TLSFileError`, etcdctl's
texts), shakes hands once per endpoint before its first call, and raises `TLSHandshakeError` at once
when a check fails (every test gives its calls an hour, so waiting for a deadline would hang);
an endpoint that fails its handshake is skipped for the next one.  ``insecure_skip_verify`` reaches a
server whose certificate has expired, unary calls and streams alike.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from procs import ServerProcess
from tls_procs import tls_server
from tlscerts import PKI

from etcdpy.client import Client, ContextDeadlineExceeded, TLSConfig
from etcdpy.client.concurrency import Election, Mutex, Session
from etcdpy.client.tls import TLSFileError, TLSHandshakeError
from etcdpy.client.watch import watch_create_request

HOUR = 3600.0


@pytest.fixture(scope="module", params=["etcd", "etcdpy"])
def tls_member(
    request: pytest.FixtureRequest, pki: PKI, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """A one-member server of each kind requiring client certificates from the test CA."""
    kind: str = request.param
    server = tls_server(kind, tmp_path_factory.mktemp(kind) / "data", pki)
    yield server
    server.stop()


def _url(server: ServerProcess) -> str:
    return f"https://127.0.0.1:{server.client_port}"


def _tls(pki: PKI, **changes: object) -> TLSConfig:
    fields: dict[str, object] = {"cacert": pki.ca, "cert": pki.client_root.cert, "key": pki.client_root.key}
    fields.update(changes)
    return TLSConfig(**fields)  # type: ignore[arg-type]


def test_client_calls_and_streams_over_tls(tls_member: ServerProcess, pki: PKI) -> None:
    with Client(_url(tls_member), tls=_tls(pki), command_timeout=HOUR) as client:
        watch = client.watch(watch_create_request("tls/watched"))
        events = iter(watch)
        assert next(events).created
        client.put("tls/watched", "seen")
        event = next(events).events[0]
        assert (event.kv.key, event.kv.value) == (b"tls/watched", b"seen")
        watch.close()
        lease = client.lease_grant(60)
        assert client.lease_time_to_live(lease.ID).TTL > 0
        assert client.get("tls/watched").kvs[0].value == b"seen"


def test_mutex_over_tls_excludes_a_second_session(tls_member: ServerProcess, pki: PKI) -> None:
    name = "tls/mutex"
    with (
        Client(_url(tls_member), tls=_tls(pki), command_timeout=HOUR) as first,
        Client(_url(tls_member), tls=_tls(pki), command_timeout=HOUR) as second,
        Session(first, ttl=10) as holder,
        Session(second, ttl=10) as contender,
    ):
        lock = Mutex(holder, name)
        lock.lock()
        other = Mutex(contender, name)
        assert not other.try_lock(), "a second session got the lock while the first held it"
        lock.unlock()
        assert other.try_lock()
        assert second.get(other.key).kvs[0].lease == contender.lease_id
        other.unlock()


def test_election_over_tls_is_observed_by_another_client(tls_member: ServerProcess, pki: PKI) -> None:
    name = "tls/election"
    with (
        Client(_url(tls_member), tls=_tls(pki), command_timeout=HOUR) as leader_client,
        Client(_url(tls_member), tls=_tls(pki), command_timeout=HOUR) as watcher_client,
        Session(leader_client, ttl=10) as session,
        Session(watcher_client, ttl=10) as watcher_session,
    ):
        election = Election(session, name)
        election.campaign("first")
        observed = Election(watcher_session, name)
        with observed.observe() as observation:
            assert next(observation).value == b"first"
            election.proclaim("second")
            assert next(observation).value == b"second"
        election.resign()


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        (
            {"cacert": "other_ca"},
            "the server's certificate is not signed by the CA in {other_ca} (certificate signed by unknown "
            "authority)",
        ),
        ({"cert": None, "key": None}, "the server requires a client certificate, and none was given"),
        (
            {"cert": "other_client.cert", "key": "other_client.key"},
            "the server refused the client certificate",
        ),
    ],
    ids=["wrong CA", "no client certificate", "client certificate of another CA"],
)
def test_a_failed_handshake_raises_at_once_naming_the_check(
    tls_member: ServerProcess, pki: PKI, changes: dict[str, str | None], reason: str
) -> None:
    files = {name: _pki_path(pki, value) for name, value in changes.items()}
    expected = f"{_url(tls_member)}: " + reason.format(other_ca=pki.other_ca)
    with Client(_url(tls_member), tls=_tls(pki, **files), command_timeout=HOUR) as client:
        with pytest.raises(TLSHandshakeError) as failure:
            client.get("anything")
        assert isinstance(failure.value, ContextDeadlineExceeded)  # what etcd's Go client reports, later
        assert failure.value.text.startswith(expected)
    # A stream would retry its connection for ever: it fails when it is opened.
    with Client(_url(tls_member), tls=_tls(pki, **files), command_timeout=HOUR) as client:
        with pytest.raises(TLSHandshakeError) as failure:
            client.watch(watch_create_request("anything"))
        assert failure.value.text.startswith(expected)


def test_an_endpoint_that_fails_its_handshake_is_skipped(tls_member: ServerProcess, pki: PKI) -> None:
    # First an endpoint that answers but speaks no TLS (the member's plaintext peer port).
    plaintext = f"https://127.0.0.1:{tls_member.peer_port}"
    with Client([plaintext, _url(tls_member)], tls=_tls(pki), command_timeout=HOUR) as client:
        client.put("tls/skipped", "ok")
        assert client.get("tls/skipped").kvs[0].value == b"ok"


def test_files_are_checked_when_the_client_is_made(pki: PKI, tmp_path: Path) -> None:
    with pytest.raises(TLSFileError, match=r"^tls: private key does not match public key$"):
        Client("https://127.0.0.1:1", tls=_tls(pki, key=pki.mismatched_key))
    missing = tmp_path / "missing.crt"
    with pytest.raises(TLSFileError, match=re.escape(f"open {missing}: no such file or directory")):
        Client("https://127.0.0.1:1", tls=_tls(pki, cacert=missing))
    # Plaintext endpoints and no TLS file: nothing is read.
    Client("127.0.0.1:1", tls=TLSConfig(cacert=missing)).close()


def test_insecure_skip_verify_reaches_a_server_with_an_expired_certificate(pki: PKI, tmp_path: Path) -> None:
    server = tls_server("etcd", tmp_path / "data", pki, pki.expired)
    try:
        checked = _tls(pki, always=True)
        with (
            Client(_url(server), tls=checked, command_timeout=HOUR) as client,
            pytest.raises(TLSHandshakeError, match=r"the server's certificate has expired$"),
        ):
            client.get("anything")
        skipping = _tls(pki, cacert=None, always=True, insecure_skip_verify=True)
        with Client(_url(server), tls=skipping, command_timeout=HOUR) as client:
            watch = client.watch(watch_create_request("tls/relayed"))
            events = iter(watch)
            assert next(events).created
            client.put("tls/relayed", "through the relay")
            assert next(events).events[0].kv.value == b"through the relay"
            watch.close()
    finally:
        server.stop()


def _pki_path(pki: PKI, value: str | None) -> Path | None:
    if value is None:
        return None
    target: object = pki
    for part in value.split("."):
        target = getattr(target, part)
    assert isinstance(target, Path)
    return target
