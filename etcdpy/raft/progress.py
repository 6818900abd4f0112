"""Progress: the leader's view of one follower's log, and the flow-control state for it."""

from __future__ import annotations

import enum

from etcdpy.raft.inflights import Inflights


class ProgressState(enum.Enum):
    """ProgressState says how the leader replicates to a follower.

    PROBE: one MsgApp at a time until the follower's match index is found.
    REPLICATE: stream MsgApps optimistically, bounded by the inflight window.
    SNAPSHOT: a snapshot is being sent; no MsgApp until it is acknowledged.
    """

    PROBE = "StateProbe"
    REPLICATE = "StateReplicate"
    SNAPSHOT = "StateSnapshot"


class Progress:
    """Progress is what the leader knows of a follower's log.

    0 <= match < next always: the methods that move either assert it.
    """

    __slots__ = (
        "inflights",
        "is_learner",
        "match",
        "msg_app_flow_paused",
        "next",
        "pending_snapshot",
        "recent_active",
        "state",
    )

    def __init__(self, next_index: int, inflights: Inflights, *, match: int = 0, is_learner: bool = False):
        self.match = match
        self.next = next_index
        assert 0 <= match < next_index, (match, next_index)
        self.state = ProgressState.PROBE
        # pending_snapshot is the index of the snapshot being sent (SNAPSHOT state only).
        self.pending_snapshot = 0
        # recent_active: heard from the follower since the last check-quorum round.
        self.recent_active = False
        # msg_app_flow_paused: in PROBE, a MsgApp is outstanding (REPLICATE uses the inflight window).
        self.msg_app_flow_paused = False
        self.inflights = inflights
        self.is_learner = is_learner

    def clone(self) -> Progress:
        """Clone returns an independent copy."""
        c = Progress(self.next, self.inflights.clone(), match=self.match, is_learner=self.is_learner)
        c.state = self.state
        c.pending_snapshot = self.pending_snapshot
        c.recent_active = self.recent_active
        c.msg_app_flow_paused = self.msg_app_flow_paused
        return c

    def __str__(self) -> str:
        s = f"{self.state.value} match={self.match} next={self.next}"
        if self.is_learner:
            s += " learner"
        if self.is_paused():
            s += " paused"
        if self.pending_snapshot:
            s += f" pendingSnap={self.pending_snapshot}"
        if not self.recent_active:
            s += " inactive"
        if self.inflights.count():
            s += f" inflight={self.inflights.count()}"
            if self.inflights.full():
                s += "[full]"
        return s

    def _reset_state(self, state: ProgressState) -> None:
        self.msg_app_flow_paused = False
        self.pending_snapshot = 0
        self.state = state
        self.inflights.reset()

    def become_probe(self) -> None:
        """Become_probe starts probing from just after match (or after a sent snapshot)."""
        if self.state is ProgressState.SNAPSHOT:
            pending = self.pending_snapshot
            self._reset_state(ProgressState.PROBE)
            self.next = max(self.match + 1, pending + 1)
        else:
            self._reset_state(ProgressState.PROBE)
            self.next = self.match + 1
        assert 0 <= self.match < self.next, self

    def become_replicate(self) -> None:
        """Become_replicate starts streaming entries after match."""
        self._reset_state(ProgressState.REPLICATE)
        self.next = self.match + 1

    def become_snapshot(self, snapshot_index: int) -> None:
        """Become_snapshot: a MsgSnap at snapshot_index is on its way; no MsgApp until it is answered."""
        self._reset_state(ProgressState.SNAPSHOT)
        self.pending_snapshot = snapshot_index

    def sent_entries(self, last_index: int, nbytes: int) -> None:
        """Sent_entries updates flow control after a MsgApp ending at last_index was sent."""
        if self.state is ProgressState.REPLICATE:
            self.next = last_index + 1  # optimistic: assume it arrives
            assert self.match < self.next, self
            self.inflights.add(last_index, nbytes)
        elif self.state is ProgressState.PROBE:
            self.msg_app_flow_paused = True
        else:
            raise AssertionError(f"sending append in unhandled state {self.state}")

    def maybe_update(self, n: int) -> bool:
        """Maybe_update records an acknowledgement up to n; True if match advanced."""
        updated = False
        if self.match < n:
            self.match = n
            updated = True
            self.msg_app_flow_paused = False
        self.next = max(self.next, n + 1)
        assert 0 <= self.match < self.next, self
        return updated

    def maybe_decr_to(self, rejected: int, match_hint: int) -> bool:
        """Maybe_decr_to moves next back after the follower rejected a MsgApp at index rejected.

        match_hint is the follower's guess of the last index that may match.
        Returns False for a stale rejection (which must be ignored).
        """
        if self.state is ProgressState.REPLICATE:
            if rejected <= self.match:
                return False
            self.next = self.match + 1
            return True
        # In PROBE, only the rejection of the probe just sent (at next - 1) counts.
        if self.next - 1 != rejected:
            return False
        self.next = max(min(rejected, match_hint + 1), self.match + 1)
        assert 0 <= self.match < self.next, self
        self.msg_app_flow_paused = False
        return True

    def is_paused(self) -> bool:
        """Is_paused says whether the leader must hold back MsgApps to this follower."""
        if self.state is ProgressState.PROBE:
            return self.msg_app_flow_paused
        if self.state is ProgressState.REPLICATE:
            return self.inflights.full()
        return True
