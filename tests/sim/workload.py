"""Simulated clients: register reads, writes and CAS through the cluster, recorded as a history.

Each client has at most one request outstanding.  It sends it to the node it
believes leads (sometimes to any node, exercising proposal and ReadIndex
forwarding), re-sends it with the same request id when no answer comes (the
toy store deduplicates; against a store that does not, as etcd's, a write
raft took is never re-sent), and gives up after a while: the outcome is then
unknown.
Times in the history are a strictly increasing event counter, so two events
never tie and the checker sees the exact real-time order.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from etcdpy.checker import UNKNOWN, KvInput, KvOp, KvOperation, KvOutput, Operation, Unknown

from .statemachine import Command

KEYS = ("k0", "k1", "k2")


@dataclass
class _Pending:
    """The request a client is waiting for."""

    command: Command
    via_log: bool  # a read served through the log rather than ReadIndex
    call_time: int
    started_step: int
    node: int  # where the last attempt went
    attempt: int
    resend_step: int  # when to try again if nothing came back
    proposed: bool = False  # a node took the request (it may be applied even if no answer comes)


# submit(node_id, attempt, command, via_log) -> whether the node took the request
Submit = Callable[[int, int, Command, bool], bool]


class Workload:
    """Workload drives the clients of one run and records their history."""

    def __init__(
        self,
        rng: random.Random,
        clients: int,
        retry_after: int,
        give_up_after: int,
        issue_probability: float,
        resend_writes: bool = True,
    ) -> None:
        self._rng = rng
        self._pending: dict[int, _Pending | None] = dict.fromkeys(range(1, clients + 1))
        self._retry_after = retry_after
        self._give_up_after = give_up_after
        self._issue_probability = issue_probability
        self._resend_writes = resend_writes
        self._next_request_id = 1
        self._clock = 0
        self._last_seen: dict[str, str | None] = {}  # the latest value each key was seen with
        self.history: list[KvOperation] = []
        self.issuing = True

    def _tick_clock(self) -> int:
        self._clock += 1
        return self._clock

    def step(self, now: int, nodes: list[int], leader_hint: int | None, submit: Submit) -> None:
        """Step lets every client issue, re-send or abandon its request."""
        for client, pending in self._pending.items():
            if pending is None:
                if self.issuing and nodes and self._rng.random() < self._issue_probability:
                    self._issue(client, now, nodes, leader_hint, submit)
            elif now - pending.started_step >= self._give_up_after:
                self._finish(client, UNKNOWN)
            elif now >= pending.resend_step and self._may_resend(pending):
                self._send(pending, now, nodes, leader_hint, submit)

    def _issue(
        self, client: int, now: int, nodes: list[int], leader_hint: int | None, submit: Submit
    ) -> None:
        request_id = self._next_request_id
        self._next_request_id += 1
        key = self._rng.choice(KEYS)
        roll = self._rng.random()
        via_log = False
        if roll < 0.35:
            request = KvInput.get(key)
        elif roll < 0.45:
            request, via_log = KvInput.get(key), True
        elif roll < 0.75:
            request = KvInput.put(key, f"v{request_id}")
        elif roll < 0.8:
            request = KvInput.delete(key)
        else:
            request = KvInput.cas(key, self._last_seen.get(key), f"v{request_id}")
        pending = _Pending(Command(request_id, request), via_log, self._tick_clock(), now, 0, 0, now)
        self._pending[client] = pending
        self._send(pending, now, nodes, leader_hint, submit)

    def _send(
        self, pending: _Pending, now: int, nodes: list[int], leader_hint: int | None, submit: Submit
    ) -> None:
        pending.attempt += 1
        if not nodes:
            pending.resend_step = now + 2  # every node is down: wait for one to come back
            return
        if leader_hint is not None and self._rng.random() < 0.75:
            node = leader_hint
        else:
            node = self._rng.choice(nodes)
        pending.node = node
        accepted = submit(node, pending.attempt, pending.command, pending.via_log)
        pending.proposed = pending.proposed or accepted
        # A refused request is retried soon; one in flight gets time to be answered.
        pending.resend_step = now + (2 if not accepted else self._retry_after)

    def _may_resend(self, pending: _Pending) -> bool:
        if self._resend_writes or not pending.proposed:
            return True
        return pending.command.request.op is KvOp.GET  # a read applied twice changes nothing

    def waiting_on(self, client: int) -> _Pending | None:
        """Waiting_on is the request client is waiting for, if any."""
        return self._pending[client]

    def deliver(self, node: int, request_id: int, attempt: int | None, output: KvOutput) -> bool:
        """Deliver hands a node's answer to the client waiting for it; False if nobody waits.

        Writes are answered by request id (any attempt: the store applies each id once).
        ReadIndex reads are answered per attempt, since each attempt is its own read.
        """
        for client, pending in self._pending.items():
            if pending is None or pending.command.request_id != request_id or pending.node != node:
                continue
            if attempt is not None and attempt != pending.attempt:
                return False
            self._finish(client, output)
            return True
        return False

    def _finish(self, client: int, output: KvOutput | Unknown) -> None:
        pending = self._pending[client]
        assert pending is not None
        request = pending.command.request
        key = str(request.key)
        if output is UNKNOWN:
            pass
        elif request.op is KvOp.GET:
            self._last_seen[key] = None if output.value is None else str(output.value)
        elif request.op is KvOp.DELETE:
            self._last_seen[key] = None
        elif request.op is KvOp.PUT or output.ok:
            self._last_seen[key] = str(request.value)
        self.history.append(Operation(client, request, output, pending.call_time, self._tick_clock()))
        self._pending[client] = None

    @property
    def outstanding(self) -> int:
        """Outstanding is how many clients are waiting for an answer."""
        return sum(1 for p in self._pending.values() if p is not None)
