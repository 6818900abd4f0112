"""Member and cluster IDs are derived exactly as etcd 3.4 derives them (values read from etcd's logs)."""

from __future__ import annotations

from pathlib import Path

from etcdpy.server.config import Config, parse_initial_cluster
from etcdpy.server.consensus.membership import Cluster, cluster_id, member_id
from etcdpy.server.storage.backend import Backend


def test_one_member_ids_match_etcd() -> None:
    mid = member_id(["http://127.0.0.1:23800"], "etcd-cluster")
    assert mid == 0x2E1259D415F2A040
    assert cluster_id([mid]) == 324952591200643719


def test_member_id_sorts_peer_urls_and_uses_the_token() -> None:
    urls = ["http://127.0.0.1:24993", "http://127.0.0.1:24992"]
    assert member_id(urls, "tok-x") == 0x977C150FE2911527
    assert member_id(list(reversed(urls)), "tok-x") == 0x977C150FE2911527
    assert member_id(urls, "other-token") != 0x977C150FE2911527


def test_three_member_cluster_id_matches_etcd() -> None:
    ids = [
        member_id(["http://127.0.0.1:24992", "http://127.0.0.1:24993"], "tok-x"),
        member_id(["http://127.0.0.1:24994"], "tok-x"),
        member_id(["http://127.0.0.1:24995"], "tok-x"),
    ]
    assert ids[1:] == [0xA3C5281F6933F756, 0x353DB25F086FD693]
    assert cluster_id(ids) == cluster_id(reversed(ids)) == 0x2931F519A5F9946E


def test_cluster_from_config_groups_urls_by_name() -> None:
    config = Config(
        name="a",
        initial_advertise_peer_urls=("http://127.0.0.1:24992", "http://127.0.0.1:24993"),
        initial_cluster=parse_initial_cluster(
            "a=http://127.0.0.1:24993,a=http://127.0.0.1:24992,b=http://127.0.0.1:24994,c=http://127.0.0.1:24995"
        ),
        initial_cluster_token="tok-x",
    ).validate()
    cluster = Cluster.from_config(config)
    assert cluster.local_id == 0x977C150FE2911527
    assert cluster.cluster_id == 0x2931F519A5F9946E
    assert list(cluster.local.peerURLs) == ["http://127.0.0.1:24992", "http://127.0.0.1:24993"]
    assert [m.ID for m in cluster.member_list()] == sorted(cluster.members)


def test_cluster_is_stored_and_loaded_with_published_attributes(tmp_path: Path) -> None:
    config = Config(initial_advertise_peer_urls=("http://127.0.0.1:23800",)).validate()
    backend = Backend(tmp_path)
    try:
        assert Cluster.load(backend) is None
        cluster = Cluster.from_config(config)
        cluster.set_attributes(cluster.local_id, "default", ["http://127.0.0.1:2379"])
        with backend.batch(sync=True) as batch:
            cluster.write(batch)
        loaded = Cluster.load(backend)
    finally:
        backend.close()
    assert loaded is not None
    assert (loaded.cluster_id, loaded.local_id) == (324952591200643719, 0x2E1259D415F2A040)
    assert loaded.local.name == "default"
    assert list(loaded.local.clientURLs) == ["http://127.0.0.1:2379"]
