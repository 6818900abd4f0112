"""Safety invariants of raft and of the replicated store, checked as the simulation runs.

The monitor is fed events by the simulated nodes and raises `SafetyViolation`
the moment one of Raft's guarantees (Raft paper, figure 3) or the store's
breaks:

* election safety: at most one leader per term;
* log matching: two entries with the same index and term carry the same
  command, and the logs holding them agree on every earlier entry (checked by
  induction: entries with equal (index, term) must follow equal previous terms);
* leader completeness: a leader holds every entry committed in a lower term;
* state machine safety: no two nodes apply different entries at one index, and
  stores at the same applied index are equal;
* applied entries are contiguous; commit and applied indexes never go back
  within a node's life, nor below what was durable across a crash;
* no acknowledged write is lost: every later leader holds it.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

from etcdpy.api.raftpb import raft_pb2 as pb


class SafetyViolation(AssertionError):
    """SafetyViolation: a raft or store guarantee was broken."""


# term_of(index) -> the term of that entry in a node's log, or None when the node cannot tell
# (compacted away, or past its last index).
TermLookup = Callable[[int], int | None]


@dataclass
class _NodeProgress:
    """What the monitor remembers of one node's life."""

    commit: int = 0  # invariant: never decreases within one life
    applied: int = 0  # invariant: never decreases within one life; entries arrive at applied + 1
    durable_applied: int = 0  # the applied index its disk holds; a restart resumes at or above it
    leader_terms_checked: set[int] = field(default_factory=set)


@dataclass
class _Marked:
    """An entry known committed (or acknowledged), with the term in which that was first seen."""

    index: int
    term: int
    seen_in_term: int


class SafetyMonitor:
    """SafetyMonitor accumulates what the cluster has done and checks each new event against it."""

    def __init__(self) -> None:
        self.leaders: dict[int, int] = {}  # term -> the leader of that term
        # (index, term) -> (entry type, data, term of the previous entry in the log that holds it)
        self._entries: dict[tuple[int, int], tuple[int, bytes, int]] = {}
        self._applied: dict[int, tuple[int, int, bytes]] = {}  # index -> (term, type, data) applied there
        self._digests: dict[int, Hashable] = {}  # applied index -> store digest after it
        self._committed: dict[int, _Marked] = {}  # index -> first sighting as committed
        self._acked: list[_Marked] = []
        self._nodes: dict[int, _NodeProgress] = {}
        self.checks = 0

    def _node(self, node_id: int) -> _NodeProgress:
        return self._nodes.setdefault(node_id, _NodeProgress())

    def _fail(self, message: str) -> None:
        raise SafetyViolation(message)

    # -- election safety, leader completeness, acknowledged writes ------------------------------

    def observe_leader(self, node_id: int, term: int, term_of: TermLookup) -> None:
        """Observe_leader checks a node that is leader in `term` right now."""
        self.checks += 1
        known = self.leaders.setdefault(term, node_id)
        if known != node_id:
            self._fail(f"election safety: nodes {known} and {node_id} are both leaders of term {term}")
        progress = self._node(node_id)
        if term in progress.leader_terms_checked:
            return
        progress.leader_terms_checked.add(term)
        for marked in self._committed.values():
            if marked.seen_in_term < term:
                self._require_entry(node_id, term, term_of, marked, "leader completeness: committed")
        for marked in self._acked:
            if marked.seen_in_term < term:
                self._require_entry(node_id, term, term_of, marked, "acknowledged write lost: acked")

    def _require_entry(
        self, node_id: int, term: int, term_of: TermLookup, marked: _Marked, what: str
    ) -> None:
        held = term_of(marked.index)
        compacted = held is None and marked.index <= self._node(node_id).applied
        if held != marked.term and not compacted:
            self._fail(
                f"{what} entry {marked.index} (term {marked.term}, seen in term {marked.seen_in_term}) "
                f"is not in the log of node {node_id}, leader of term {term} (it holds term {held})"
            )

    def acknowledged(self, index: int, term: int, seen_in_term: int) -> None:
        """Acknowledged records a write answered to its client: entry `index` of `term`."""
        self._acked.append(_Marked(index, term, seen_in_term))

    # -- log matching ---------------------------------------------------------------------------

    def observe_append(self, node_id: int, entries: list[pb.Entry], term_of: TermLookup) -> None:
        """Observe_append checks entries a node has just written to its log."""
        for entry in entries:
            self.checks += 1
            previous = term_of(entry.index - 1)
            if previous is None:
                continue  # the entry lands right behind a compaction point we cannot see past
            key = (entry.index, entry.term)
            mine = (entry.type, entry.data, previous)
            theirs = self._entries.setdefault(key, mine)
            if theirs != mine:
                self._fail(
                    f"log matching: node {node_id} holds entry {entry.index} of term {entry.term} as "
                    f"{_show(mine)}, another log holds {_show(theirs)}"
                )

    # -- commit and apply ------------------------------------------------------------------------

    def observe_commit(self, node_id: int, commit: int) -> None:
        """Observe_commit checks a node's commit index (from a hard state it persists)."""
        progress = self._node(node_id)
        if commit < progress.commit:
            self._fail(f"commit index of node {node_id} went back from {progress.commit} to {commit}")
        progress.commit = commit

    def observe_apply(self, node_id: int, entry: pb.Entry, node_term: int, digest: Hashable | None) -> None:
        """Observe_apply checks an entry a node applies, and the store digest after it (None: not seen)."""
        self.checks += 1
        progress = self._node(node_id)
        if entry.index != progress.applied + 1:
            self._fail(f"node {node_id} applies entry {entry.index} right after {progress.applied}")
        progress.applied = entry.index
        applied = (entry.term, entry.type, entry.data)
        first = self._applied.setdefault(entry.index, applied)
        if first != applied:
            self._fail(
                f"state machine safety: node {node_id} applies {applied} at index {entry.index}, "
                f"another node applied {first}"
            )
        self._committed.setdefault(entry.index, _Marked(entry.index, entry.term, node_term))
        if digest is not None:
            self._check_digest(node_id, entry.index, digest)

    def observe_snapshot_restore(self, node_id: int, index: int, term: int | None, digest: Hashable) -> None:
        """Observe_snapshot_restore checks a node that replaced its store by a snapshot's state at `index`.

        `term` is the term of the entry at `index` when the node knows it (None: the state came
        from a sender that had applied past the snapshot's own index).
        """
        progress = self._node(node_id)
        if index < progress.applied:
            self._fail(f"node {node_id} restores snapshot {index} below its applied index {progress.applied}")
        progress.applied = index
        first = self._applied.get(index)
        if first is not None and term is not None and first[0] != term:
            self._fail(
                f"snapshot at {index} has term {term}, but the entry applied there had term {first[0]}"
            )
        self._check_digest(node_id, index, digest)

    def _check_digest(self, node_id: int, index: int, digest: Hashable) -> None:
        first = self._digests.setdefault(index, digest)
        if first != digest:
            self._fail(
                f"state machine safety: node {node_id} store at index {index} is {digest}, was {first}"
            )

    # -- crashes -----------------------------------------------------------------------------------

    def observe_durable(self, node_id: int, applied: int) -> None:
        """Observe_durable records the applied index a node's disk now holds."""
        progress = self._node(node_id)
        progress.durable_applied = max(progress.durable_applied, applied)

    def observe_restart(self, node_id: int, applied: int, commit: int) -> None:
        """Observe_restart checks where a restarted node resumes, and begins its new life."""
        progress = self._node(node_id)
        if applied < progress.durable_applied:
            self._fail(
                f"node {node_id} restarts at applied {applied}, below its durable {progress.durable_applied}"
            )
        progress.applied = applied
        progress.commit = commit


def _show(entry: tuple[int, bytes, int]) -> str:
    entry_type, data, previous_term = entry
    return f"(type {entry_type}, data {data!r}, after an entry of term {previous_term})"
