"""Crash safety of physical compaction: kill -9 a process between or inside its steps, then resume.

Two identical stores schedule the same compaction; one finishes it in one go,
the other in small steps in a child process that is killed at random moments
and restarted.  Resumed from its stored cursor, the killed one must end
byte-identical to the straight one.
"""

from __future__ import annotations

import random
import subprocess
import sys
import time
from pathlib import Path

from test_mvcc_harness import Harness

from etcdpy.server.mvcc import layout

STEPPER = """
import sys, time
from etcdpy.server.apply import Applier
from etcdpy.server.storage.backend import Backend

applier = Applier(Backend(sys.argv[1]))
print("ready", flush=True)
while not applier.compact_step(max_records=5):
    time.sleep(0.001)  # stretch the run over many steps so that kills land inside it
print("done", flush=True)
"""


def _mvcc_bytes(h: Harness) -> list[tuple[bytes, bytes]]:
    spans = [
        (layout.HISTORY_START, layout.HISTORY_STOP),
        (layout.INDEX_START, layout.INDEX_STOP),
        (layout.CURRENT_START, layout.CURRENT_STOP),
        (layout.LIVE_START, layout.LIVE_STOP),
    ]
    return [kv for start, stop in spans for kv in h.backend.db.iterator(start=start, stop=stop)]


def test_kill_minus_nine_during_compaction_then_resume_matches_an_uninterrupted_run(tmp_path: Path) -> None:
    straight, killed = Harness(tmp_path / "straight"), Harness(tmp_path / "killed")
    for h in (straight, killed):
        for i in range(3000):
            h.apply_entries({"put": {"key": b"k%04d" % (i % 1000), "value": b"%d" % i}})
        h.delete(b"k01", b"k02")  # tombstoned below the compaction: these keys vanish
        h.compact(3002)
    straight.applier.compact_step(max_records=1_000_000)
    killed.close()
    rng = random.Random(5)
    interrupted = 0
    while True:
        child = subprocess.Popen([sys.executable, "-c", STEPPER, str(killed.path)], stdout=subprocess.PIPE)
        assert child.stdout is not None
        assert child.stdout.readline() == b"ready\n"
        if interrupted < 3:
            time.sleep(rng.uniform(0.0, 0.1))  # the crash moment is the random variable under test
            child.kill()
        done = child.wait() == 0 and child.stdout.read() == b"done\n"
        child.stdout.close()
        if done:
            break
        killed.reopen()
        interrupted += killed.applier.compaction_pending
        killed.close()
    assert interrupted == 3
    killed.reopen()
    assert not killed.applier.compaction_pending
    assert _mvcc_bytes(killed) == _mvcc_bytes(straight)
    assert killed.applier.hash_kv(0) == straight.applier.hash_kv(0)
    straight.close()
    killed.close()
