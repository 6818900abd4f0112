"""Snapshots saved while faults come and go, each restores; a full disk while saving or restoring.

The scenario: a 3-member cluster under a put load; for a few seconds a seeded schedule
kills and restarts, pauses and resumes, cuts off or slows a member while `snapshot save`
runs against a random member.  A save either succeeds (the file is whole) or fails with
nothing left behind (no file, no ``.part``).  Afterwards every saved file restores into a
one-member cluster whose HashKV at the snapshot's revision equals the source cluster's.
"""

from __future__ import annotations

import contextlib
import json
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from procs import ServerProcess
from tmpfs import tiny_filesystem

from etcdpy.chaos.cluster import ChaosCluster
from etcdpy.chaos.proxy import OPEN, LinkFault
from etcdpy.client import Client

pytestmark = pytest.mark.timeout(300)


def etcdpy(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "etcdpy", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def put_load(endpoints: list[str], stop: threading.Event) -> None:
    with Client(endpoints, command_timeout=2) as client:
        i = 0
        while not stop.is_set():
            with contextlib.suppress(Exception):  # faults make some puts fail; only the snapshots matter
                client.put(f"load/{i % 300:03d}", f"value {i}")
            i += 1


def test_snapshots_saved_under_faults_each_restore(
    tmp_path: Path, chaos_seed: int | None, chaos_time: float | None
) -> None:
    seed = 17 if chaos_seed is None else chaos_seed
    rng = random.Random(seed)
    seconds = chaos_time or 8.0
    cluster = ChaosCluster(tmp_path / "cluster", 3, seed=seed)
    saved: list[Path] = []
    stop = threading.Event()
    load = threading.Thread(target=put_load, args=(cluster.endpoints, stop), daemon=True)
    try:
        cluster.start()
        load.start()
        deadline = time.monotonic() + seconds
        attempt = 0
        while time.monotonic() < deadline:
            victim = rng.choice(cluster.members)
            fault = rng.choice(["kill", "pause", "cut", "slow", "none"])
            if fault == "kill":
                cluster.kill(victim)
            elif fault == "pause":
                cluster.pause(victim)
            elif fault == "cut":
                cluster.isolate(victim, LinkFault(cut=True))
            elif fault == "slow":
                cluster.isolate(victim, LinkFault(delay=0.05, jitter=0.02))
            source = rng.choice(cluster.members)
            target = tmp_path / f"snap-{attempt}.db"
            attempt += 1
            result = etcdpy(
                "--endpoints", source.endpoint, "--dial-timeout", "1s", "--command-timeout", "5s",
                "snapshot", "save", str(target),
            )  # fmt: skip
            if result.returncode == 0:
                assert target.is_file()
                saved.append(target)
            else:
                assert result.returncode == 5 and result.stderr.startswith("Error: "), result.stderr
                assert not target.exists()
            assert not Path(f"{target}.part").exists()
            # heal
            if fault == "kill":
                cluster.launch(victim)
            elif fault == "pause":
                cluster.resume(victim)
            elif fault in ("cut", "slow"):
                cluster.isolate(victim, OPEN)
        stop.set()
        load.join(timeout=30)
        cluster.heal_links()
        for member in cluster.members:
            if member.paused:
                cluster.resume(member)
            if not member.running:
                cluster.launch(member)
        cluster.wait_writable(60)
        assert saved, f"no snapshot was saved in {attempt} attempts (seed {seed})"
        source_hashes = {}
        for path in saved:
            status = json.loads(etcdpy("snapshot", "status", str(path), "-w", "json").stdout)
            revision = status["revision"]
            source_hashes[path] = (revision, cluster.client().hash_kv(revision, timeout=10).hash)
    finally:
        stop.set()
        cluster.stop()

    for path, (revision, source_hash) in source_hashes.items():
        member = ServerProcess("etcdpy", tmp_path / f"{path.stem}.data", name="restored")
        restored = etcdpy(
            "snapshot", "restore", str(path), "--name", member.name, "--data-dir", str(member.data_dir),
            "--initial-cluster", f"{member.name}={member.peer_url}",
            "--initial-advertise-peer-urls", member.peer_url,
        )  # fmt: skip
        assert restored.returncode == 0, restored.stderr
        member.start()
        try:
            with Client([member.endpoint]) as c:
                assert c.status().header.revision == revision
                assert c.hash_kv(revision).hash == source_hash, (path, seed)
        finally:
            member.stop()


def test_a_full_disk_while_saving_or_restoring_leaves_nothing_behind(
    etcdpy_server: ServerProcess, tmp_path: Path
) -> None:
    with Client([etcdpy_server.endpoint]) as c:
        for i in range(400):
            c.put(f"k/{i:03d}", "x" * 2000)
    whole = tmp_path / "whole.db"
    assert etcdpy("--endpoints", etcdpy_server.endpoint, "snapshot", "save", str(whole)).returncode == 0
    assert whole.stat().st_size > 800_000
    with tiny_filesystem(tmp_path / "small", "256k") as small:
        target = small / "s.db"
        result = etcdpy("--endpoints", etcdpy_server.endpoint, "snapshot", "save", str(target))
        assert result.returncode == 5
        assert result.stderr == "Error: no space left on device\n", result.stderr
        assert list(small.iterdir()) == []

        result = etcdpy("snapshot", "restore", str(whole), "--data-dir", str(small / "member"))
        assert result.returncode == 1
        assert result.stderr.startswith(f"Error: restoring {whole} into {small / 'member'}: "), result.stderr
        assert "no space left on device" in result.stderr.lower(), result.stderr
        assert list(small.iterdir()) == []
