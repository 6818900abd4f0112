"""Kubernetes-style traffic: optimistic updates, paginated lists, and an informer (list, then watch).

Writers create, update and delete objects the way the API server does: a create
compares create_revision to 0, an update or delete compares the mod_revision the
writer last read.  Listers read the collection in pages at one revision, as
``kubectl get --chunk-size`` does: every page of one list must come from that
revision and the pages must add up to the first page's count.  The informer lists,
then watches from the next revision and keeps a cache; once the faults heal its
cache must equal a fresh list, object by object (value and mod_revision).
"""

from __future__ import annotations

from etcdpy.api.etcdserverpb import rpc_pb2 as pb
from etcdpy.api.mvccpb.kv_pb2 import KeyValue
from etcdpy.chaos.history import PREFIX
from etcdpy.chaos.watching import ResumableWatch, prefix_watch
from etcdpy.chaos.workload import Context, Process, recorded_cas, recorded_get
from etcdpy.client import Client, prefix_range_end

PODS = PREFIX + b"registry/pods/"
PAGE = 4


def paginated_list(client: Client, revision: int = 0) -> tuple[int, list[KeyValue], list[str]]:
    """List every pod in pages of `PAGE` at one revision: (revision, kvs, what is wrong with the pages)."""
    end = prefix_range_end(PODS)
    first = client.get(PODS, end, limit=PAGE, revision=revision)
    at = revision or first.header.revision
    kvs = list(first.kvs)
    problems: list[str] = []
    more = first.more
    while more:
        page = client.get(kvs[-1].key + b"\0", end, limit=PAGE, revision=at)
        kvs.extend(page.kvs)
        more = page.more
        if page.count > first.count:
            problems.append(f"a later page counts {page.count} keys left, the first {first.count} in all")
    keys = [kv.key for kv in kvs]
    if keys != sorted(set(keys)):
        problems.append(f"keys out of order or repeated: {[k.decode() for k in keys]}")
    if len(kvs) != first.count:
        problems.append(f"the pages hold {len(kvs)} pods, the first page counted {first.count}")
    late = [kv.key.decode() for kv in kvs if kv.mod_revision > at]
    if late:
        problems.append(f"pods modified after the list's revision {at}: {late}")
    return at, kvs, problems


class Kubernetes:
    """Kubernetes: optimistic writers, paginated listers and one informer over a collection of pods."""

    name = "kubernetes"

    def __init__(self, writers: int = 2, listers: int = 1, pods: int = 8) -> None:
        self.writers = writers
        self.listers = listers
        self.pods = [PODS + f"pod-{p}".encode() for p in range(pods)]
        self.cache: dict[bytes, KeyValue] = {}
        self.informer: ResumableWatch | None = None
        self.list_revision = 0

    def start(self, ctx: Context) -> None:
        for w in range(self.writers):
            ctx.spawn(f"k8s-writer-{w}", lambda w=w: self._writer(ctx, w))  # type: ignore[misc]
        for lister in range(self.listers):
            ctx.spawn(f"k8s-lister-{lister}", lambda n=lister: self._lister(ctx, n))  # type: ignore[misc]
        ctx.spawn("k8s-informer", lambda: self._start_informer(ctx))

    def _writer(self, ctx: Context, index: int) -> None:
        rng = ctx.rng(f"k8s-writer-{index}")
        client = ctx.client(index)
        proc = Process(100 + index)
        sequence = 0
        while not ctx.stop.is_set():
            pod = rng.choice(self.pods)
            ctx.history.count(self.name)
            current = recorded_get(ctx, proc, client, pod)
            if current is False:
                continue
            sequence += 1
            spec = f"k{index}.{sequence}".encode()
            if current is None:
                recorded_cas(ctx, proc, client, pod, None, spec, by_revision=True)
            elif rng.random() < 0.15:
                recorded_cas(ctx, proc, client, pod, current, None, by_revision=True)  # type: ignore[arg-type]
            else:
                recorded_cas(ctx, proc, client, pod, current, spec, by_revision=True)  # type: ignore[arg-type]

    def _lister(self, ctx: Context, index: int) -> None:
        client = ctx.client(index + 2)
        while not ctx.stop.is_set():
            ctx.history.count(self.name)
            called = ctx.history.clock()
            try:
                at, _, problems = paginated_list(client)
            except Exception:
                continue
            ctx.history.timed(called, at, "paginated list")
            for problem in problems:
                ctx.history.anomaly("pagination", f"list at revision {at}: {problem}")

    def _start_informer(self, ctx: Context) -> None:
        client = ctx.client(1)
        while not ctx.stop.is_set():
            try:
                at, kvs, _ = paginated_list(client)
            except Exception:
                continue
            self.list_revision = at
            self.cache = {kv.key: kv for kv in kvs}
            watch = ResumableWatch(ctx, "k8s-informer-watch", 1, prefix_watch(PODS, at + 1), self._apply)
            self.informer = watch
            watch.start()
            return

    def _apply(self, response: pb.WatchResponse) -> None:
        for event in response.events:
            if event.type == event.PUT:
                self.cache[event.kv.key] = event.kv
            else:
                self.cache.pop(event.kv.key, None)

    def finish(self, ctx: Context, client: Client) -> None:
        """The informer, caught up to a fresh list's revision, holds exactly what that list holds."""
        if self.informer is None:
            ctx.history.anomaly("informer", "the informer never completed its first list")
            return
        at, kvs, problems = paginated_list(client)
        for problem in problems:
            ctx.history.anomaly("pagination", f"final list at revision {at}: {problem}")
        caught_up = self.informer.catch_up(at, timeout=30.0)
        self.informer.close(at if caught_up else None)
        if not caught_up:
            ctx.history.anomaly("watch-liveness", f"the informer's watch never reached revision {at}")
            return
        listed = {kv.key: (kv.value, kv.mod_revision) for kv in kvs}
        cached = {key: (kv.value, kv.mod_revision) for key, kv in self.cache.items()}
        if listed != cached:
            differ = sorted(k.decode() for k in set(listed) | set(cached) if listed.get(k) != cached.get(k))
            ctx.history.anomaly(
                "informer",
                f"cache built from the list at {self.list_revision} and the watch differs from the list at "
                f"{at} for {differ}",
            )
