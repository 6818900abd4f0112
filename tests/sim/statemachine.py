"""The simulated application: a KV store of registers applied from raft entries, with request ids.

Commands are JSON in entry data.  Every command carries a request id; the
store remembers the result of each id it applied, so a client may re-propose a
request it got no answer for, and the retry returns the first result instead
of applying twice (the way etcd's clients must not, but our test clients do to
learn outcomes).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from etcdpy.checker import KvInput, KvOp, KvOutput


@dataclass(frozen=True, slots=True)
class Command:
    """Command is one client request as proposed to raft."""

    request_id: int
    request: KvInput

    def encode(self) -> bytes:
        """Encode is the entry data of this command."""
        r = self.request
        return json.dumps([self.request_id, r.op.value, r.key, r.value, r.expected]).encode()

    @classmethod
    def decode(cls, data: bytes) -> Command:
        """Decode reads a command back from entry data."""
        request_id, op, key, value, expected = json.loads(data)
        return cls(request_id, KvInput(KvOp(op), key, value, expected))


class KvStateMachine:
    """KvStateMachine is the deterministic store every node applies committed commands to."""

    def __init__(self) -> None:
        self.data: dict[str, str] = {}
        # request id -> the output of its first application
        self.results: dict[int, KvOutput] = {}

    def apply(self, command: Command) -> KvOutput:
        """Apply executes a command once; a repeated request id returns the first result."""
        known = self.results.get(command.request_id)
        if known is not None:
            return known
        r = command.request
        key = str(r.key)
        current = self.data.get(key)
        if r.op is KvOp.GET:
            result = KvOutput(current)
        elif r.op is KvOp.PUT:
            self.data[key] = str(r.value)
            result = KvOutput()
        elif r.op is KvOp.DELETE:
            self.data.pop(key, None)
            result = KvOutput()
        else:
            swapped = current == r.expected
            if swapped:
                self.data[key] = str(r.value)
            result = KvOutput(ok=swapped)
        self.results[command.request_id] = result
        return result

    def copy(self) -> KvStateMachine:
        """Copy is an independent store with the same contents."""
        twin = KvStateMachine()
        twin.data = dict(self.data)
        twin.results = dict(self.results)
        return twin

    def read(self, key: str) -> str | None:
        """Read is a local read of the applied state (used to serve ReadIndex reads)."""
        return self.data.get(key)

    def digest(self) -> tuple[tuple[str, str], ...]:
        """Digest identifies the store's contents: equal digests, equal stores."""
        return tuple(sorted(self.data.items()))

    def encode(self) -> bytes:
        """Encode serializes the whole store (snapshot data)."""
        results = [[i, out.value, out.ok] for i, out in self.results.items()]
        return json.dumps({"data": self.data, "results": results}).encode()

    @classmethod
    def decode(cls, blob: bytes) -> KvStateMachine:
        """Decode rebuilds a store from snapshot data (empty data: an empty store)."""
        machine = cls()
        if blob:
            loaded = json.loads(blob)
            machine.data = dict(loaded["data"])
            machine.results = {i: KvOutput(value, ok) for i, value, ok in loaded["results"]}
        return machine
