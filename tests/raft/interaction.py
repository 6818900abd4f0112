"""Interaction driver: runs raft nodes in-process from a small command language.

Used by the golden-file scripts (testdata/*.txt, see test_interaction.py) and,
through its Python methods, by the paper-section tests. Every node has a
MemoryStorage and a trivial state machine (the list of applied payloads);
messages wait in one queue until delivered, dropped or cut.

Commands (IDs are node IDs; lists are written (1,2,3)):

    add-nodes N [voters=(..) learners=(..) index=I] [check-quorum=true] [pre-vote=true]
              [max-size-per-msg=B] [max-inflight-msgs=K] [max-uncommitted-entries-size=B]
              [disable-proposal-forwarding=true] [election-tick=T] [heartbeat-tick=T]
        N new nodes; with voters, they boot from a snapshot at index I with that config
    campaign ID                       start an election now
    propose ID DATA [DATA...]         propose one entry, or several in one batch
    propose-conf-change ID [v1=true] [transition=auto|implicit|explicit]
    <changes, e.g. "v4 l5 r3 u2" (voter, learner, remove, update); none = leave joint>
    read-index ID CTX                 linearizable read request
    transfer-leadership from=ID to=ID
    process-ready ID...               persist, send, apply and advance one Ready
    take-ready ID                     persist one Ready and send its messages; hold the rest
    finish-ready ID                   send the held Ready's persisted messages, apply it, advance
    deliver-msgs [type=MsgX] ID...    step the queued messages addressed to ID
    deliver-msgs drop=(ID,...)        discard the queued messages addressed to ID
    stabilize [ID...]                 process-ready and deliver until nothing changes
    tick-election ID / tick-heartbeat ID
                                      tick a randomized election timeout / a heartbeat interval
    cut A B / isolate ID / heal       drop messages on a link / all links of ID / restore all
    compact ID INDEX                  snapshot the state machine at INDEX and compact the log
    report-unreachable ID PEER
    report-snapshot ID PEER [failure=true]
    raft-log ID / raft-state / status ID / applied ID
    log-level debug|info|warn|error|none
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from random import Random

from etcdpy.api.raftpb import raft_pb2 as pb
from etcdpy.raft import (
    ConfChangeError,
    MemoryStorage,
    ProposalDropped,
    RaftConfig,
    RaftError,
    RawNode,
    Ready,
    SnapshotStatus,
    conf_changes_from_string,
    decode_conf_change,
    describe_entry,
    describe_hard_state,
    describe_message,
    describe_snapshot,
    sender,
)
from etcdpy.raft.status import StateType

LEVELS = {"debug": 0, "info": 1, "warn": 2, "error": 3, "none": 4}


class CapturingLogger:
    """CapturingLogger writes raft's log lines into the transcript, filtered by level."""

    def __init__(self, out: list[str], level: int) -> None:
        self.out = out
        self.level = level
        self.indent = ""

    def _log(self, level: int, name: str, fmt: str, args: tuple[object, ...]) -> None:
        if level >= self.level:
            self.out.append(f"{self.indent}{name} {fmt % args}")

    def debug(self, fmt: str, *args: object) -> None:
        self._log(0, "DEBUG", fmt, args)

    def info(self, fmt: str, *args: object) -> None:
        self._log(1, "INFO", fmt, args)

    def warning(self, fmt: str, *args: object) -> None:
        self._log(2, "WARN", fmt, args)

    def error(self, fmt: str, *args: object) -> None:
        self._log(3, "ERROR", fmt, args)


@dataclass
class Node:
    """Node is one raft node with its storage and state machine."""

    raw: RawNode
    storage: MemoryStorage
    config: RaftConfig
    # applied normal entries (index, payload), in order: the state machine
    applied: list[tuple[int, bytes]] = field(default_factory=list)
    # read states received, as (index, request context)
    read_states: list[tuple[int, bytes]] = field(default_factory=list)
    # (index, configuration in force from that index on), for snapshots at past indexes
    conf_states: list[tuple[int, pb.ConfState]] = field(default_factory=list)
    # a Ready taken (persisted, messages sent) but not yet applied and advanced
    held: Ready | None = None

    def conf_state_at(self, index: int) -> pb.ConfState:
        """Conf_state_at is the configuration in force after applying up to index."""
        return [cs for i, cs in self.conf_states if i <= index][-1]


@dataclass
class Command:
    """Command is one parsed script command."""

    name: str
    args: list[str]
    kwargs: dict[str, str]
    input: list[str]

    def ints(self) -> list[int]:
        return [int(a) for a in self.args]

    def flag(self, key: str, default: bool = False) -> bool:
        return self.kwargs[key] == "true" if key in self.kwargs else default

    def id_list(self, key: str) -> list[int]:
        v = self.kwargs.get(key, "").strip("()")
        return [int(x) for x in v.replace(",", " ").split()]


def parse_command(line: str, body: list[str]) -> Command:
    """Parse_command splits `name arg key=value key=(1,2)` into a Command."""
    tokens = shlex.split(line)
    args: list[str] = []
    kwargs: dict[str, str] = {}
    for tok in tokens[1:]:
        if "=" in tok:
            k, v = tok.split("=", 1)
            kwargs[k] = v
        else:
            args.append(tok)
    return Command(tokens[0], args, kwargs, body)


class Env:
    """Env holds the nodes, the message queue and the transcript being written."""

    def __init__(self) -> None:
        self.nodes: dict[int, Node] = {}
        self.queue: list[pb.Message] = []
        self.cut: set[frozenset[int]] = set()
        self.out: list[str] = []
        self.logger = CapturingLogger(self.out, LEVELS["info"])

    # -- output --

    def emit(self, line: str) -> None:
        self.out.append(self.logger.indent + line)

    @contextmanager
    def section(self, title: str) -> Iterator[None]:
        self.emit(title)
        old = self.logger.indent
        self.logger.indent = old + "  "
        try:
            yield
        finally:
            self.logger.indent = old

    # -- node management --

    def add_nodes(
        self,
        n: int,
        voters: list[int] | None = None,
        learners: list[int] | None = None,
        index: int = 0,
        **options: object,
    ) -> list[int]:
        """Add_nodes creates n nodes; with voters, they boot from a snapshot at `index` with that config."""
        ids = []
        for _ in range(n):
            nid = max(self.nodes, default=0) + 1
            storage = MemoryStorage()
            if voters:
                meta = pb.SnapshotMetadata(index=index, term=1 if index else 0)
                meta.conf_state.voters.extend(voters)
                meta.conf_state.learners.extend(learners or [])
                if index:
                    storage.apply_snapshot(pb.Snapshot(metadata=meta))
                else:
                    raise ValueError("add-nodes with voters needs index > 0")
            cfg = RaftConfig(
                id=nid,
                election_tick=10,
                heartbeat_tick=1,
                storage=storage,
                applied=index,
                rand=Random(nid),
                logger=self.logger,
            )
            for k, v in options.items():
                setattr(cfg, k, v)
            node = Node(RawNode(cfg), storage, cfg)
            node.conf_states.append((index, node.raw.status().conf_state))
            self.nodes[nid] = node
            ids.append(nid)
        return ids

    def raw(self, nid: int) -> RawNode:
        return self.nodes[nid].raw

    # -- the Ready loop --

    def process_ready(self, nid: int) -> bool:
        """Process_ready handles one Ready of node nid (persist, send, apply, advance)."""
        node = self.nodes[nid]
        if node.held is not None or not node.raw.has_ready():
            return False
        rd = node.raw.ready()
        with self.section(f"> {nid} handling Ready"):
            self._describe_ready(rd)
            self._persist(node, rd)
            self._finish(node, rd)
        return True

    def take_ready(self, nid: int) -> bool:
        """Take_ready persists a Ready of nid and sends its messages; the rest waits for finish_ready."""
        node = self.nodes[nid]
        if node.held is not None or not node.raw.has_ready():
            return False
        rd = node.raw.ready()
        with self.section(f"> {nid} taking Ready"):
            self._describe_ready(rd)
            self._persist(node, rd)
        node.held = rd
        return True

    def finish_ready(self, nid: int) -> bool:
        """Finish_ready completes the Ready take_ready held: persisted messages, apply, advance."""
        node = self.nodes[nid]
        rd, node.held = node.held, None
        if rd is None:
            return False
        with self.section(f"> {nid} finishing Ready"):
            self._finish(node, rd)
        return True

    def _persist(self, node: Node, rd: Ready) -> None:
        if rd.snapshot is not None:
            node.storage.apply_snapshot(rd.snapshot)
            node.applied = decode_state(rd.snapshot.data)
            meta = rd.snapshot.metadata
            node.conf_states.append((meta.index, meta.conf_state))
        node.storage.append(rd.entries)
        if rd.hard_state is not None:
            node.storage.set_hard_state(rd.hard_state)
        self.queue.extend(rd.messages)

    def _finish(self, node: Node, rd: Ready) -> None:
        self.queue.extend(rd.persisted_messages)
        for e in rd.committed_entries:
            self._apply(node, e)
        node.read_states.extend((rs.index, rs.request_ctx) for rs in rd.read_states)
        node.raw.advance(rd)

    def _apply(self, node: Node, e: pb.Entry) -> None:
        cc = decode_conf_change(e)
        if cc is None:
            if e.data:
                node.applied.append((e.index, e.data))
            return
        try:
            node.conf_states.append((e.index, node.raw.apply_conf_change(cc)))
        except ConfChangeError as err:
            self.emit(f"conf change refused: {err}")

    def _describe_ready(self, rd: Ready) -> None:
        self.emit(f"Ready MustSync={str(rd.must_sync).lower()}:")
        if rd.soft_state is not None:
            self.emit(f"Lead:{rd.soft_state.lead} State:{rd.soft_state.role.value}")
        if rd.hard_state is not None:
            self.emit(f"HardState {describe_hard_state(rd.hard_state)}")
        for title, ents in (("Entries:", rd.entries), ("CommittedEntries:", rd.committed_entries)):
            if ents:
                self.emit(title)
                for e in ents:
                    self.emit(describe_entry(e))
        if rd.snapshot is not None:
            self.emit(f"Snapshot {describe_snapshot(rd.snapshot)}")
        for title, msgs in (("Messages:", rd.messages), ("PersistedMessages:", rd.persisted_messages)):
            if msgs:
                self.emit(title)
                for m in msgs:
                    self.emit(describe_message(m))
        if rd.read_states:
            self.emit("ReadStates:")
            for rs in rd.read_states:
                self.emit(f"Index:{rs.index} Ctx:{rs.request_ctx.decode()}")

    def deliver_msgs(self, nid: int, only_type: str | None = None, drop: bool = False) -> int:
        """Deliver_msgs steps queued messages addressed to nid (or drops them); returns the count."""
        mine = [
            m
            for m in self.queue
            if m.to == nid and (only_type is None or pb.MessageType.Name(m.type) == only_type)
        ]
        if not mine:
            return 0
        ids = {id(m) for m in mine}
        self.queue = [m for m in self.queue if id(m) not in ids]
        title = f"> {nid} dropping messages" if drop else f"> {nid} receiving messages"
        with self.section(title):
            for m in mine:
                if drop or frozenset((sender(m), m.to)) in self.cut:
                    self.emit(f"dropped: {describe_message(m)}")
                    continue
                self.emit(describe_message(m))
                try:
                    self.nodes[nid].raw.step(m)
                except RaftError as err:
                    self.emit(f"error: {err}")
        return len(mine)

    def stabilize(self, ids: list[int] | None = None) -> None:
        """Stabilize processes Readys and delivers messages until nothing changes."""
        ids = ids or sorted(self.nodes)
        while True:
            busy = False
            for nid in ids:
                busy |= self.process_ready(nid)
            for nid in ids:
                busy |= self.deliver_msgs(nid) > 0
            if not busy:
                return

    def tick(self, nid: int, n: int) -> None:
        for _ in range(n):
            self.raw(nid).tick()

    # -- inspection --

    def raft_state(self) -> None:
        for nid, node in sorted(self.nodes.items()):
            r = node.raw.raft
            kind = (
                "Learner" if r.is_learner else ("Voter" if nid in r.trk.config.voters.ids() else "Non-Voter")
            )
            self.emit(f"{nid}: {r.role.value} ({kind}) Term:{r.term} Lead:{r.lead}")

    def raft_log(self, nid: int) -> None:
        s = self.nodes[nid].storage
        first, last = s.first_index(), s.last_index()
        if last < first:
            self.emit(f"log is empty: first index={first}, last index={last}")
            return
        for e in s.entries(first, last + 1, (1 << 64) - 1):
            self.emit(describe_entry(e))

    def status(self, nid: int) -> None:
        st = self.raw(nid).status()
        if st.soft_state.role is not StateType.LEADER:
            self.emit(f"{nid}: not leader ({st.soft_state.role.value}), config {st.config}")
            return
        self.emit(f"config {st.config}")
        for pid, p in st.progress.items():
            flags = (" learner" if p.is_learner else "") + (" paused" if p.paused else "")
            flags += f" inflight={p.inflight}" if p.inflight else ""
            self.emit(f"{pid}: {p.state} match={p.match} next={p.next}{flags}")

    # -- script commands --

    def handle(self, cmd: Command) -> str:
        """Handle runs one script command and returns its transcript."""
        self.out.clear()
        handler: Callable[[Command], None] | None = getattr(self, "cmd_" + cmd.name.replace("-", "_"), None)
        if handler is None:
            raise ValueError(f"unknown command {cmd.name}")
        handler(cmd)
        return "\n".join(self.out) if self.out else "ok"

    def cmd_log_level(self, cmd: Command) -> None:
        self.logger.level = LEVELS[cmd.args[0]]

    def cmd_add_nodes(self, cmd: Command) -> None:
        options: dict[str, object] = {}
        for key in ("check_quorum", "pre_vote", "disable_proposal_forwarding"):
            if key.replace("_", "-") in cmd.kwargs:
                options[key] = cmd.flag(key.replace("_", "-"))
        for key in (
            "max_size_per_msg",
            "max_inflight_msgs",
            "max_uncommitted_entries_size",
            "election_tick",
            "heartbeat_tick",
        ):
            if key.replace("_", "-") in cmd.kwargs:
                options[key] = int(cmd.kwargs[key.replace("_", "-")])
        self.add_nodes(
            int(cmd.args[0]),
            voters=cmd.id_list("voters"),
            learners=cmd.id_list("learners"),
            index=int(cmd.kwargs.get("index", "0")),
            **options,
        )

    def cmd_campaign(self, cmd: Command) -> None:
        self.raw(cmd.ints()[0]).campaign()

    def _attempt(self, fn: Callable[[], None]) -> None:
        try:
            fn()
        except ProposalDropped as err:
            self.emit(f"error: proposal dropped: {err}")

    def cmd_propose(self, cmd: Command) -> None:
        nid = int(cmd.args[0])
        datas = [a.encode() for a in cmd.args[1:]]
        if len(datas) == 1:
            self._attempt(lambda: self.raw(nid).propose(datas[0]))
        else:
            self._attempt(lambda: self.raw(nid).propose_many(datas))

    def cmd_propose_conf_change(self, cmd: Command) -> None:
        nid = int(cmd.args[0])
        changes = conf_changes_from_string(" ".join(cmd.input))
        cc: pb.ConfChange | pb.ConfChangeV2
        if cmd.flag("v1"):
            if len(changes) != 1:
                raise ValueError("v1 conf change takes exactly one change")
            cc = pb.ConfChange(type=changes[0].type, node_id=changes[0].node_id)
        else:
            transitions = {
                "auto": pb.ConfChangeTransitionAuto,
                "implicit": pb.ConfChangeTransitionJointImplicit,
                "explicit": pb.ConfChangeTransitionJointExplicit,
            }
            cc = pb.ConfChangeV2(
                changes=changes, transition=transitions[cmd.kwargs.get("transition", "auto")]
            )
        self._attempt(lambda: self.raw(nid).propose_conf_change(cc))

    def cmd_process_ready(self, cmd: Command) -> None:
        for nid in cmd.ints():
            if not self.process_ready(nid):
                self.emit(f"> {nid}: no Ready")

    def cmd_take_ready(self, cmd: Command) -> None:
        for nid in cmd.ints():
            if not self.take_ready(nid):
                self.emit(f"> {nid}: no Ready")

    def cmd_finish_ready(self, cmd: Command) -> None:
        for nid in cmd.ints():
            if not self.finish_ready(nid):
                self.emit(f"> {nid}: no Ready held")

    def cmd_deliver_msgs(self, cmd: Command) -> None:
        for nid in cmd.id_list("drop"):
            self.deliver_msgs(nid, cmd.kwargs.get("type"), drop=True)
        for nid in cmd.ints():
            if not self.deliver_msgs(nid, cmd.kwargs.get("type")):
                self.emit(f"> {nid}: no messages")

    def cmd_stabilize(self, cmd: Command) -> None:
        self.stabilize(cmd.ints() or None)

    def cmd_tick_election(self, cmd: Command) -> None:
        nid = cmd.ints()[0]
        self.tick(nid, self.raw(nid).raft.randomized_election_timeout)

    def cmd_tick_heartbeat(self, cmd: Command) -> None:
        nid = cmd.ints()[0]
        self.tick(nid, self.raw(nid).raft.heartbeat_timeout)

    def cmd_cut(self, cmd: Command) -> None:
        a, b = cmd.ints()
        self.cut.add(frozenset((a, b)))

    def cmd_isolate(self, cmd: Command) -> None:
        nid = cmd.ints()[0]
        for other in self.nodes:
            if other != nid:
                self.cut.add(frozenset((nid, other)))

    def cmd_heal(self, cmd: Command) -> None:
        self.cut.clear()

    def cmd_transfer_leadership(self, cmd: Command) -> None:
        self.raw(int(cmd.kwargs["from"])).transfer_leader(int(cmd.kwargs["to"]))

    def cmd_compact(self, cmd: Command) -> None:
        nid, index = cmd.ints()
        node = self.nodes[nid]
        data = encode_state([a for a in node.applied if a[0] <= index])
        node.storage.create_snapshot(index, node.conf_state_at(index), data)
        node.storage.compact(index)
        self.raft_log(nid)

    def cmd_raft_log(self, cmd: Command) -> None:
        self.raft_log(cmd.ints()[0])

    def cmd_raft_state(self, cmd: Command) -> None:
        self.raft_state()

    def cmd_status(self, cmd: Command) -> None:
        self.status(cmd.ints()[0])

    def cmd_applied(self, cmd: Command) -> None:
        node = self.nodes[cmd.ints()[0]]
        self.emit(" ".join(d.decode() for _, d in node.applied) or "(nothing applied)")

    def cmd_read_index(self, cmd: Command) -> None:
        nid = int(cmd.args[0])
        self._attempt(lambda: self.raw(nid).read_index(cmd.args[1].encode()))

    def cmd_report_unreachable(self, cmd: Command) -> None:
        nid, peer = cmd.ints()
        self.raw(nid).report_unreachable(peer)

    def cmd_report_snapshot(self, cmd: Command) -> None:
        nid, peer = cmd.ints()
        status = SnapshotStatus.FAILURE if cmd.flag("failure") else SnapshotStatus.FINISH
        self.raw(nid).report_snapshot(peer, status)


def encode_state(applied: list[tuple[int, bytes]]) -> bytes:
    """Encode_state serializes a state machine (for snapshots)."""
    return b"\n".join(b"%d:%s" % (i, d) for i, d in applied)


def decode_state(data: bytes) -> list[tuple[int, bytes]]:
    """Decode_state restores a state machine from a snapshot."""
    out = []
    for line in data.split(b"\n"):
        if line:
            i, d = line.split(b":", 1)
            out.append((int(i), d))
    return out
