"""`etcdpy server` flags and ETCD_* variables -> Config, and every way a value can be wrong.

Exit codes are etcd's: 2 when a value does not parse (flag parser), 1 when values
parse but do not fit together ("error verifying flags").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from click.testing import CliRunner, Result

from etcdpy.server import main
from etcdpy.server.config import (
    Config,
    ConfigError,
    auto_client_workers,
    listen_address,
    parse_duration,
)


@dataclass
class Invocation:
    result: Result
    configs: list[Config] = field(default_factory=list)

    @property
    def config(self) -> Config:
        assert self.result.exit_code == 0, self.result.output
        assert len(self.configs) == 1
        return self.configs[0]


Run = Callable[..., Invocation]


@pytest.fixture
def run(monkeypatch: pytest.MonkeyPatch) -> Run:
    """Invoke `etcdpy server` with the member replaced by a recorder of the final Config."""

    def invoke(args: list[str], env: dict[str, str] | None = None) -> Invocation:
        configs: list[Config] = []

        def record(config: Config) -> int:
            configs.append(config)
            return 0

        monkeypatch.setattr(main, "serve", record)
        result = CliRunner().invoke(main.command, args, env=env or {}, prog_name="etcdpy server")
        return Invocation(result, configs)

    return invoke


def test_no_flags_gives_a_loopback_one_member_cluster(run: Run) -> None:
    config = run([]).config
    assert config.name == "default"
    assert config.data_dir == "default.etcd"
    assert [listen_address(u) for u in config.listen_client_urls] == ["127.0.0.1:2379"]
    assert config.initial_cluster == (("default", "http://localhost:2380"),)
    assert (config.max_request_bytes, config.max_txn_ops) == (1572864, 128)
    assert config.grpc_max_receive_bytes == 1572864 + 512 * 1024


def test_flags_fill_the_config(run: Run) -> None:
    args = (
        "--name n1 --listen-client-urls http://127.0.0.1:5000,http://127.0.0.2:5000"
        " --initial-advertise-peer-urls http://127.0.0.1:5001 --heartbeat-interval 50 --election-timeout 500"
        " --max-txn-ops 7 --initial-cluster-state existing --auto-compaction-mode revision"
        " --auto-compaction-retention 1000 --pre-vote=false --log-level debug --experimental-grpc-threads 8"
    )
    config = run(args.split()).config
    assert config.data_dir == "n1.etcd"
    assert config.listen_client_urls == ("http://127.0.0.1:5000", "http://127.0.0.2:5000")
    assert config.initial_cluster == (("n1", "http://127.0.0.1:5001"),)  # derived from name + peer URLs
    assert (config.heartbeat_interval_ms, config.election_timeout_ms, config.max_txn_ops) == (50, 500, 7)
    assert config.initial_cluster_state == "existing"
    assert config.auto_compaction_interval() == 1000
    assert config.pre_vote is False
    assert config.log_level == "debug"
    assert config.experimental_grpc_threads == 8


def test_bare_boolean_flag_means_true(run: Run) -> None:
    assert run(["--unsafe-no-fsync"]).config.unsafe_no_fsync is True


def test_environment_variables_are_read(run: Run) -> None:
    env = {
        "ETCD_NAME": "envname",
        "ETCD_DATA_DIR": "/tmp/x",
        "ETCD_MAX_REQUEST_BYTES": "99",
        "ETCD_PRE_VOTE": "false",
    }
    config = run([], env).config
    assert (config.name, config.data_dir, config.max_request_bytes, config.pre_vote) == (
        "envname",
        "/tmp/x",
        99,
        False,
    )


def test_a_flag_wins_over_its_environment_variable_with_a_warning(run: Run) -> None:
    inv = run(["--name", "flagname"], {"ETCD_NAME": "envname", "ETCD_MAX_TXN_OPS": "3"})
    assert inv.config.name == "flagname"
    assert inv.config.max_txn_ops == 3
    assert "ETCD_NAME is ignored" in inv.result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["--listen-client-urls", "not-a-url"],
        ["--listen-client-urls", "ftp://127.0.0.1:1"],
        ["--advertise-client-urls", "http://127.0.0.1"],  # no port
        ["--listen-peer-urls", "http://127.0.0.1:99999"],
        ["--initial-cluster", "nourl"],
        ["--initial-cluster-state", "bogus"],
        ["--heartbeat-interval", "abc"],
        ["--snapshot-count", "-1"],
        ["--max-request-bytes", "-5"],
        ["--max-txn-ops", "-5"],
        ["--log-level", "loud"],
        ["--experimental-client-workers", "-1"],
        ["--experimental-client-workers", "many"],
        ["--no-such-flag"],
    ],
)
def test_values_that_do_not_parse_exit_2(run: Run, args: list[str]) -> None:
    inv = run(args)
    assert inv.result.exit_code == 2, inv.result.output
    assert inv.configs == []
    assert "Error" in inv.result.stderr


def test_unparsable_environment_value_exits_2(run: Run) -> None:
    inv = run([], {"ETCD_HEARTBEAT_INTERVAL": "fast"})
    assert inv.result.exit_code == 2
    assert inv.configs == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--heartbeat-interval", "0"], "--heartbeat-interval must be >0"),
        (["--election-timeout", "100", "--heartbeat-interval", "100"], "at least as 5 times"),
        (["--auto-compaction-mode", "weird"], 'unknown auto-compaction-mode "weird"'),
        (["--auto-compaction-retention", "1y"], "invalid duration"),
        (["--auto-compaction-mode", "revision", "--auto-compaction-retention", "1h"], "revision count"),
        (["--max-request-bytes", "0"], "--max-request-bytes must be >0"),
        (["--max-txn-ops", "0"], "--max-txn-ops must be >0"),
        (["--quota-backend-bytes", str(9 * 1024**3)], "exceeds"),
        (
            ["--experimental-client-workers", "2", "--experimental-client-front", "off"],
            "--experimental-client-workers needs the front on the client URLs",
        ),
        (
            ["--name", "a", "--initial-cluster", "b=http://127.0.0.1:1"],
            "--initial-cluster has a=(missing)",
        ),
        (
            [
                "--initial-advertise-peer-urls",
                "http://127.0.0.1:2",
                "--initial-cluster",
                "default=http://127.0.0.1:1",
            ],
            "but missing from --initial-advertise-peer-urls=http://127.0.0.1:2",
        ),
    ],
)
def test_values_that_do_not_fit_together_exit_1(run: Run, args: list[str], message: str) -> None:
    inv = run(args)
    assert inv.result.exit_code == 1, inv.result.output
    assert inv.configs == []
    assert "error verifying flags" in inv.result.stderr
    assert message in inv.result.stderr


@pytest.mark.parametrize(("cpus", "workers"), [(1, 0), (2, 2), (3, 3), (4, 4), (64, 4)])
def test_auto_workers_are_one_per_cpu_up_to_four_and_none_on_one_cpu(cpus: int, workers: int) -> None:
    assert auto_client_workers(cpus) == workers


def test_auto_client_workers_follow_the_cpus_the_member_may_use(
    run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    auto = ["--experimental-client-workers", "auto"]
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1, 2})
    assert run([]).config.experimental_client_workers == 0  # off unless asked for
    assert run(auto).config.experimental_client_workers == 3
    assert run([], {"ETCD_EXPERIMENTAL_CLIENT_WORKERS": "auto"}).config.experimental_client_workers == 3
    assert run(["--experimental-client-workers", "1"]).config.experimental_client_workers == 1
    # auto leaves client gRPC to the member where it was set up to serve it itself
    for serving in (["--experimental-client-front", "off"], ["--experimental-grpc-threads", "4"]):
        assert run([*auto, *serving]).config.experimental_client_workers == 0
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {1})  # taskset -c 1
    assert run(auto).config.experimental_client_workers == 0


def test_validate_raises_config_error_directly() -> None:
    with pytest.raises(ConfigError, match="heartbeat"):
        Config(heartbeat_interval_ms=0).validate()


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("1", 3600.0), ("90s", 90.0), ("1h30m", 5400.0), ("500ms", 0.5), ("0", 0.0), ("1.5h", 5400.0)],
)
def test_durations_follow_go_syntax_and_bare_numbers_are_hours(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "h", "5x", "1h 2m", "-1h"])
def test_bad_durations_are_rejected(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_listen_address_keeps_explicit_hosts_and_maps_localhost_to_ipv4() -> None:
    assert listen_address("http://localhost:2379") == "127.0.0.1:2379"
    assert listen_address("http://0.0.0.0:1") == "0.0.0.0:1"
    assert listen_address("http://[::1]:7") == "[::1]:7"
