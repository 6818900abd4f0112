"""The differential cases: etcdctl command lines whose output etcdpy must reproduce.

Each case is a short sequence of steps run in order; every step's stdout, the
``Error:`` lines of its stderr and its exit code are compared.  The whole list
runs in order on one fresh server per run, so revisions line up across runs.
``{ep}`` in an argument is the server's endpoint; a step without
``--endpoints`` gets ``--endpoints={ep}`` in front.  ``proto`` names the
response message of a ``-w protobuf`` step (its header ids are masked after
decoding).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Step:
    argv: tuple[str, ...]
    stdin: bytes = b""
    env: dict[str, str] = field(default_factory=dict)
    proto: str | None = None
    usage: bool = False  # a flag error: both print a usage text (each its own), compared only for presence


@dataclass(frozen=True)
class Case:
    name: str
    steps: tuple[Step, ...]


def s(
    *argv: str,
    stdin: bytes = b"",
    env: dict[str, str] | None = None,
    proto: str | None = None,
    usage: bool = False,
) -> Step:
    return Step(tuple(argv), stdin, env or {}, proto, usage)


def case(name: str, *steps: Step) -> Case:
    return Case(name, steps)


DEAD = "127.0.0.1:1"  # nothing listens on port 1
FAST_FAIL = ("--dial-timeout=200ms", "--command-timeout=1s")

TXN_BASIC = b'mod("t1") > "0"\n\nput t1 "changed"\nget t1\ndel t2 --prev-kv\n\nput t3 "else branch"\n\n'
TXN_FAIL = b'val("t1") = "nope"\nver("t1") > "0"\n\nput t1 x\n\nput t3 "else"\nget t --prefix --keys-only\n\n'

TXN_ALL_TARGETS = b'c("t1") > "0"\nversion("t1") != "100"\nvalue("t1") < "zzz"\nm("t1") = "1"\n\nget t1\n\n\n'

CASES: tuple[Case, ...] = (
    case("version", s("version"), s("-w", "json", "version")),
    case(
        "put",
        s("put", "k1", "v1"),
        s("put", "k1", "v2", "--prev-kv"),
        s("-w", "json", "put", "k1", "v3", "--prev-kv"),
        s("-w", "fields", "put", "k1", "v4", "--prev-kv"),
        s("-w", "protobuf", "put", "k1", "v5", proto="PutResponse"),
        s("put", "k2", stdin=b"from stdin\nwith two lines\n"),
        s("put", "k3", "value with spaces", "extra-ignored"),
        s("put", "--", "k4", "-dash-value"),
        s("put", "k1", "--ignore-value"),
        s("put", "k1", "--ignore-lease", "v6"),
        s("--hex", "put", "k1", "v7", "--prev-kv"),
        s("put", "k1", "v8", "-w", "json"),
    ),
    case(
        "put errors",
        s("put"),
        s("put", "k1", "--ignore-value", "x"),
        s("put", "lonely"),
        s("put", "k1", "v", "--lease=zz"),
        s("put", "k1", "v", "--lease=123"),
        s("put", "missing", "--ignore-value"),
        s("put", "missing", "--ignore-lease", "v"),
        s("put", "", "v"),
        s("-w", "table", "put", "k1", "tv"),
        s("-w", "yaml", "put", "k1", "yv"),
    ),
    case(
        "get",
        s("put", "a", "1"),
        s("put", "ab", "22"),
        s("put", "abc", "333"),
        s("put", "b", "4444"),
        s("put", "bin", stdin=b'\x00\xff\xfe tab\there "q" \\ \xc3\xa9'),
        s("get", "a"),
        s("get", "a", "b"),
        s("get", "a", "--prefix"),
        s("get", "ab", "--from-key"),
        s("get", "", "--prefix", "--keys-only"),
        s("get", "", "--from-key", "--limit=2"),
        s("get", "a", "--prefix", "--limit", "2", "-w", "json"),
        s("get", "a", "--prefix", "--order=DESCEND"),
        s("get", "a", "--prefix", "--order=descend", "--sort-by=value"),
        s("get", "a", "--prefix", "--sort-by=CREATE", "--order=DESCEND"),
        s("get", "a", "--prefix", "--sort-by=MODIFY"),
        s("get", "a", "--prefix", "--sort-by=VERSION", "--order=ASCEND"),
        s("get", "a", "--prefix", "--sort-by=KEY", "--order=DESCEND"),
        s("get", "a", "--prefix", "--keys-only", "-w", "json"),
        s("get", "a", "--prefix", "--print-value-only"),
        s("get", "a", "--rev=3"),
        s("get", "a", "--consistency=s"),
        s("get", "nothing"),
        s("-w", "json", "get", "nothing"),
        s("-w", "fields", "get", "a", "--prefix"),
        s("-w", "fields", "get", "bin"),
        s("-w", "json", "get", "bin"),
        s("--hex", "get", "bin"),
        s("get", "bin", "--print-value-only"),
        s("-w", "protobuf", "get", "a", "--prefix", proto="RangeResponse"),
        s("get", "a", "b", "c-ignored"),
    ),
    case(
        "get errors",
        s("get"),
        s("get", "a", "--prefix", "--from-key"),
        s("get", "a", "b", "--prefix"),
        s("get", "a", "--order=sideways"),
        s("get", "a", "--sort-by=size"),
        s("get", "a", "--consistency=x"),
        s("-w", "json", "get", "a", "--print-value-only"),
        s("get", "a", "--rev=100000"),
        s("get", "a", "--limit=x", usage=True),
        s("get", "a", "--bogus-flag", usage=True),
        s("-w", "xml", "get", "a"),
    ),
    case(
        "del",
        s("put", "d1", "1"),
        s("put", "d2", "2"),
        s("put", "d3", "3"),
        s("put", "dz", "z"),
        s("put", "e", "e"),
        s("del", "d1"),
        s("del", "d1"),
        s("del", "d2", "d3", "--prev-kv"),
        s("-w", "json", "del", "d", "--prefix", "--prev-kv"),
        s("put", "d4", "4"),
        s("-w", "fields", "del", "d4", "--prev-kv"),
        s("put", "d5", "5"),
        s("-w", "protobuf", "del", "d5", proto="DeleteRangeResponse"),
        s("del", "e", "--from-key"),
        s("del"),
        s("del", "a", "b", "c"),
        s("del", "a", "--prefix", "--from-key"),
        s("del", "a", "b", "--from-key"),
        s("-w", "table", "del", "nothing"),
    ),
    case(
        "txn",
        s("put", "t1", "one"),
        s("put", "t2", "two"),
        s("txn", stdin=TXN_BASIC),
        s("put", "t2", "two again"),
        s("-w", "json", "txn", stdin=TXN_BASIC),
        s("put", "t2", "two again"),
        s("-w", "fields", "txn", stdin=TXN_BASIC),
        s("txn", stdin=TXN_FAIL),
        s("-w", "json", "txn", stdin=TXN_FAIL),
        s("txn", "-i", stdin=TXN_FAIL),
        s("txn", "--interactive", stdin=b"\n\n\n"),
        s("txn", stdin=TXN_ALL_TARGETS),
        s("txn", stdin=b'create("t1") = "0"\n\n\nget t3 --print-value-only\nput t4 `raw \\n`\n\n'),
        s("-w", "protobuf", "txn", stdin=TXN_FAIL, proto="TxnResponse"),
        s("--hex", "txn", stdin=TXN_FAIL),
    ),
    case(
        "txn errors",
        s("txn", "extra"),
        s("txn", stdin=b""),
        s("txn", stdin=b"\n\n"),
        s("txn", stdin=b"xx\n\n\n\n"),
        s("txn", stdin=b'mod("t1") >\n\n\n\n'),
        s("txn", stdin=b'mod("t1") > "a"\n\n\n\n'),
        s("txn", stdin=b'foo("t1") > "1"\n\n\n\n'),
        s("txn", stdin=b'mod(t1) > "1"\n\n\n\n'),
        s("txn", stdin=b"\nput\n\n\n"),
        s("txn", stdin=b"\nbad a b\n\n\n"),
        s("txn", stdin=b"\nput a\n\n\n"),
        s("txn", stdin=b"\nput a b --lease=zz\n\n\n"),
        s("txn", stdin=b"\nget a --nope\n\n\n"),
        s("txn", stdin=b"\nget a --prefix --from-key\n\n\n"),
        s("txn", stdin=b"\nput dup 1\nput dup 2\n\n\n"),
        s("txn", stdin=b'val("t1") = "changed"\n\nput t1 x'),
    ),
    case(
        "compaction",
        s("put", "c", "1"),
        s("put", "c", "2"),
        s("put", "c", "3"),
        s("compaction", "3"),
        s("compaction", "3"),
        s("-w", "json", "compaction", "4"),
        s("compaction", "--physical", "5"),
        s("get", "c", "--rev=2"),
        s("compaction"),
        s("compaction", "abc"),
        s("compaction", "1000000"),
        s("compaction", "1", "2"),
    ),
    case(
        "member list",
        s("member", "list"),
        s("-w", "json", "member", "list"),
        s("-w", "fields", "member", "list"),
        s("-w", "table", "member", "list"),
        s("-w", "protobuf", "member", "list", proto="MemberListResponse"),
        s("member", "list", "--hex"),
    ),
    case(
        "endpoint",
        s("endpoint", "status"),
        s("-w", "json", "endpoint", "status"),
        s("-w", "fields", "endpoint", "status"),
        s("-w", "table", "endpoint", "status"),
        s("-w", "protobuf", "endpoint", "status"),
        s("endpoint", "status", "--cluster"),
        s("endpoint", "--cluster", "status", "-w", "json"),
        s("endpoint", "hashkv"),
        s("endpoint", "hashkv", "--rev=6"),
        s("-w", "json", "endpoint", "hashkv"),
        s("-w", "fields", "endpoint", "hashkv", "--cluster"),
        s("-w", "table", "endpoint", "hashkv"),
        s("endpoint", "hashkv", "--rev=1"),
        s("endpoint", "hashkv", "--rev=1000000"),
        s("endpoint", "health"),
        s("-w", "json", "endpoint", "health"),
        s("-w", "fields", "endpoint", "health", "--cluster"),
        s("-w", "table", "endpoint", "health"),
        s("-w", "protobuf", "endpoint", "health"),
    ),
    case(
        "unreachable",
        s("--endpoints", DEAD, *FAST_FAIL, "get", "a"),
        s("--endpoints", DEAD, *FAST_FAIL, "put", "a", "b"),
        s("--endpoints", DEAD, *FAST_FAIL, "endpoint", "status"),
        s("--endpoints", DEAD, *FAST_FAIL, "endpoint", "hashkv"),
        s("--endpoints", DEAD, *FAST_FAIL, "endpoint", "health"),
        s("--endpoints", DEAD, *FAST_FAIL, "endpoint", "status", "--cluster"),
        s("--endpoints", f"{DEAD},{{ep}}", *FAST_FAIL, "endpoint", "status"),
        s("--endpoints", f"{DEAD},{{ep}}", *FAST_FAIL, "get", "a"),
        s("--endpoints", DEAD, *FAST_FAIL, "version"),
    ),
    case(
        "flags and environment",
        s("put", "envkey", "envvalue"),
        s("get", "envkey", env={"ETCDCTL_WRITE_OUT": "json"}),
        s("get", "envkey", env={"ETCDCTL_HEX": "true"}),
        s("--hex=true", "get", "envkey"),
        s("--hex=false", "get", "envkey"),
        s("get", "envkey", "--prefix=true"),
        s("get", "envkey", env={"ETCDCTL_DIAL_TIMEOUT": "3s", "ETCDCTL_COMMAND_TIMEOUT": "1m30s"}),
        s("--dial-timeout=abc", "get", "envkey", usage=True),
        s("--command-timeout=5", "get", "envkey", usage=True),
        s("get", "envkey", env={"ETCDCTL_ENDPOINTS": "{ep}"}),
        s("--endpoints={ep}", "get", "envkey", env={"ETCDCTL_ENDPOINTS": "{ep}"}),
        s("--keepalive-time=3s", "--keepalive-timeout=4s", "--insecure-transport=true", "get", "envkey"),
        s("--insecure-skip-tls-verify", "--insecure-discovery=false", "--debug=false", "get", "envkey"),
        s("get", "envkey", "-w", "fields", "--endpoints={ep}"),
        s("--cacert=", "get", "envkey"),
        s("--cert=", "get", "envkey"),
        s("--key=", "get", "envkey"),
        s("--cacert=/nonexistent/ca.pem", "get", "envkey"),
        # --insecure-transport=false on a plaintext port: etcdpy names the failed check where etcdctl
        # times out (same exit code): that step is in test_tls_cli.py ("TLS client on a plaintext port").
        s("--insecure-transport=true", "get", "envkey"),
        s("--user=root:pw", "get", "envkey"),
        s("--user=nobody", "--password=x", "get", "envkey"),
        s("--debug", "get", "envkey"),
    ),
)
