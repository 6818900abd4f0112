"""The committed generated protobuf code is exactly what scripts/genproto.py produces."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_generated_code_matches_protos(tmp_path: Path) -> None:
    subprocess.run([sys.executable, str(ROOT / "scripts" / "genproto.py"), str(tmp_path)], check=True)
    fresh = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    committed = sorted(
        p.relative_to(ROOT)
        for suffix in ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")
        for p in (ROOT / "etcdpy" / "api").rglob(f"*{suffix}")
    )
    assert fresh == committed, "generated file set differs: run scripts/genproto.py"
    stale = [str(p) for p in fresh if (tmp_path / p).read_bytes() != (ROOT / p).read_bytes()]
    assert not stale, f"stale generated code (run scripts/genproto.py): {stale}"


def test_grpc_paths_are_etcds() -> None:
    from etcdpy.api.etcdserverpb import rpc_pb2
    from etcdpy.api.v3electionpb import v3election_pb2
    from etcdpy.api.v3lockpb import v3lock_pb2

    def paths(desc: object) -> set[str]:
        return {
            f"/{svc.full_name}/{m.name}"
            for svc in desc.services_by_name.values()  # type: ignore[attr-defined]
            for m in svc.methods
        }

    assert {"/etcdserverpb.KV/Range", "/etcdserverpb.Watch/Watch", "/etcdserverpb.Maintenance/HashKV",
            "/etcdserverpb.Auth/RoleRevokePermission", "/etcdserverpb.Cluster/MemberPromote"} <= paths(
        rpc_pb2.DESCRIPTOR)  # fmt: skip
    assert paths(v3lock_pb2.DESCRIPTOR) == {"/v3lockpb.Lock/Lock", "/v3lockpb.Lock/Unlock"}
    assert "/v3electionpb.Election/Observe" in paths(v3election_pb2.DESCRIPTOR)
