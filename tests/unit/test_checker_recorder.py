"""Recorder: histories collected from call / outcome notifications."""

from __future__ import annotations

import math
import threading

from etcdpy.checker import KV_MODEL, UNKNOWN, KvInput, KvOutput, Outcome, Recorder, check_operations


class FakeClock:
    """FakeClock advances by one each time it is read."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 1
        return self.now


def test_calls_and_outcomes_become_operations_with_their_times() -> None:
    recorder: Recorder[KvInput, KvOutput] = Recorder(FakeClock())
    write = recorder.call(1, KvInput.put("x", "1"))  # t=1
    read = recorder.call(2, KvInput.get("x"))  # t=2
    recorder.returned(read, KvOutput("1"))  # t=3
    recorder.returned(write, KvOutput())  # t=4
    ops = recorder.operations()
    assert [(op.client_id, op.call_time, op.return_time) for op in ops] == [(2, 2, 3), (1, 1, 4)]
    assert check_operations(KV_MODEL, ops).ok


def test_unknown_and_pending_calls_may_have_happened_failed_ones_did_not() -> None:
    recorder: Recorder[KvInput, KvOutput] = Recorder(FakeClock())
    lost = recorder.call(1, KvInput.put("x", "lost"))
    recorder.unknown(lost)
    recorder.call(2, KvInput.put("y", "pending"))
    refused = recorder.call(3, KvInput.put("z", "refused"))
    recorder.failed(refused)
    ops = recorder.operations()
    assert [(op.input.key, op.output, op.return_time) for op in ops] == [
        ("x", UNKNOWN, math.inf),
        ("y", UNKNOWN, math.inf),
    ]
    later = recorder.call(4, KvInput.get("z"))
    recorder.returned(later, KvOutput("refused"))
    # A read of the refused write is a read of a value never written.
    assert check_operations(KV_MODEL, recorder.operations()).outcome is Outcome.ILLEGAL


def test_threads_record_without_losing_operations() -> None:
    recorder: Recorder[KvInput, KvOutput] = Recorder()

    def client(client_id: int) -> None:
        for i in range(200):
            handle = recorder.call(client_id, KvInput.put(f"k{client_id}", i))
            recorder.returned(handle, KvOutput())

    threads = [threading.Thread(target=client, args=(c,)) for c in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ops = recorder.operations()
    assert len(ops) == 800
    assert check_operations(KV_MODEL, ops).ok
