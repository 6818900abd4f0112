"""``etcdpy snapshot restore``: a new cluster's member data dir from an etcd or etcdpy snapshot.

As etcdctl 3.4 restores (clientv3/snapshot): the file's sha256 is checked (unless
``--skip-hash-check``, needed for a bbolt file copied out of a data dir), its pages
too; the keys with their history, the leases, alarms, auth (users with their
password hashes, roles, the enabled flag and auth revision) and cluster version are
kept; the members are dropped and replaced by the new cluster the flags describe (a
new cluster ID, member IDs from ``--initial-cluster`` and its token), whose first
log is bootstrapped as `etcdpy server` bootstraps a new cluster.

Nothing half-written is left behind: the member is written into a temporary
directory beside ``--data-dir`` and renamed into place once complete (fsynced); any
failure (a damaged file, a full disk) removes it.  A data dir that exists and is not
empty is refused, so one in use never is touched.  The CLI mounts this command
lazily (`etcdpy.cli.snapshot`): this module never imports etcdpy.cli.
"""

from __future__ import annotations

import os
import secrets
import shutil
from pathlib import Path

import click
import plyvel

from etcdpy.server import config as cfg
from etcdpy.server.consensus.membership import Cluster
from etcdpy.server.consensus.replication import bootstrap_new_cluster
from etcdpy.server.storage import etcddb
from etcdpy.server.storage.backend import Backend, BackendError
from etcdpy.server.storage.bbolt import BoltReader
from etcdpy.server.storage.raftlog import RaftLogStorage
from etcdpy.server.storage.snapshot import fsync_dir

DEFAULT_NAME = "default"
DEFAULT_PEER_URL = "http://localhost:2380"


class RestoreError(click.ClickException):
    """Printed as ``Error: <message>``, exit 1 (etcdctl's ExitError)."""


def restore(
    snapshot: str | os.PathLike[str],
    *,
    name: str,
    data_dir: str,
    initial_cluster: str,
    initial_cluster_token: str,
    initial_advertise_peer_urls: str,
    skip_hash_check: bool = False,
) -> etcddb.Loaded:
    """Write the data dir of member `name` of a new cluster holding the snapshot's state."""
    try:
        members = cfg.parse_initial_cluster(initial_cluster)
        if name not in {member for member, _url in members}:
            raise RestoreError(f'couldn\'t find local name "{name}" in the initial cluster configuration')
        config = cfg.Config(
            name=name,
            data_dir=data_dir,
            initial_cluster=members,
            initial_cluster_token=initial_cluster_token,
            initial_advertise_peer_urls=cfg.parse_urls(initial_advertise_peer_urls),
        ).validate()
    except (ValueError, cfg.ConfigError) as exc:
        raise RestoreError(str(exc)) from None
    target = Path(config.data_dir)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise RestoreError(f'data-dir "{config.data_dir}" exists')
    path = Path(snapshot)
    if not path.is_file():
        raise RestoreError(f"open {snapshot}: no such file or directory")
    try:
        etcddb.verify_sha256(path, skip_hash_check=skip_hash_check)
        reader = etcddb.open_snapshot(path)
    except etcddb.SnapshotError as exc:
        raise RestoreError(str(exc)) from None
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.parent / f".{target.name}.restoring-{secrets.token_hex(4)}"
    try:
        with reader:
            loaded = _write_member(reader, staging, config)
        _fsync_tree(staging)
        if target.exists():
            target.rmdir()  # empty (checked above)
        os.rename(staging, target)
        fsync_dir(target.parent)
    except etcddb.SnapshotError as exc:
        raise RestoreError(str(exc)) from None
    except (OSError, plyvel.Error, BackendError) as exc:
        raise RestoreError(f"restoring {snapshot} into {config.data_dir}: {_text(exc)}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return loaded


def _write_member(reader: BoltReader, staging: Path, config: cfg.Config) -> etcddb.Loaded:
    backend = Backend(staging)
    try:
        loaded = etcddb.load_state(reader, backend.db)
        raftlog = RaftLogStorage.open(backend, sync=True)
        bootstrap_new_cluster(raftlog, Cluster.from_config(config))  # synced: the state written before too
        return loaded
    finally:
        backend.close()


def _text(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    arg = exc.args[0] if exc.args else exc
    return arg.decode("utf-8", "replace") if isinstance(arg, bytes) else str(arg)


def _fsync_tree(root: Path) -> None:
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(Path(dirpath))


@click.command(
    "restore",
    short_help="Restores an etcd member snapshot to an etcd directory",
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.argument("args", nargs=-1, metavar="<filename> [options]")
@click.option("--data-dir", default="", help="Path to the data directory")
@click.option("--wal-dir", default="", help="Path to the WAL directory (use --data-dir if none given)")
@click.option(
    "--initial-cluster",
    default=f"{DEFAULT_NAME}={DEFAULT_PEER_URL}",
    help="Initial cluster configuration for restore bootstrap",
)
@click.option(
    "--initial-cluster-token",
    default="etcd-cluster",
    help="Initial cluster token for the etcd cluster during restore bootstrap",
)
@click.option(
    "--initial-advertise-peer-urls",
    default=DEFAULT_PEER_URL,
    help="List of this member's peer URLs to advertise to the rest of the cluster",
)
@click.option("--name", default=DEFAULT_NAME, help="Human-readable name for this member")
@click.option(
    "--skip-hash-check",
    is_flag=True,
    help="Ignore snapshot integrity hash value (required if copied from data directory)",
)
def command(
    args: tuple[str, ...],
    data_dir: str,
    wal_dir: str,
    initial_cluster: str,
    initial_cluster_token: str,
    initial_advertise_peer_urls: str,
    name: str,
    skip_hash_check: bool,
) -> None:
    """Restore an etcd member snapshot to an etcd directory."""
    if len(args) != 1:
        error = RestoreError("snapshot restore requires exactly one argument")
        error.exit_code = 128  # etcdctl's ExitBadArgs
        raise error
    if wal_dir:
        raise RestoreError("--wal-dir is not supported: etcdpy keeps its raft log inside --data-dir")
    restore(
        args[0],
        name=name,
        data_dir=data_dir or f"{name}.etcd",
        initial_cluster=initial_cluster,
        initial_cluster_token=initial_cluster_token,
        initial_advertise_peer_urls=initial_advertise_peer_urls,
        skip_hash_check=skip_hash_check,
    )
