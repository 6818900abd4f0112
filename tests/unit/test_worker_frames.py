"""The client workers' calls channel (etcdpy/server/workers/calls.py): frames round-trip, however cut."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from etcdpy.server.workers.calls import (
    BY_PATH,
    CANCEL,
    METHODS,
    FrameBuffer,
    decode_call,
    decode_metadata,
    decode_reply,
    encode_call,
    encode_metadata,
    encode_reply,
)

u32 = st.integers(0, 2**32 - 1)
u16 = st.integers(0, 2**16 - 1)
# gRPC metadata keys are lowercase ASCII; a "-bin" key carries any bytes, any other key printable text.
key_text = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_.", min_size=1, max_size=300)
text_pair = st.tuples(key_text.filter(lambda k: not k.endswith("-bin")), st.text(max_size=200))
binary_pair = st.tuples(key_text.map(lambda k: k + "-bin"), st.binary(max_size=200))
metadata = st.lists(st.one_of(text_pair, binary_pair), max_size=6)
calls = st.tuples(u32, u16, st.text(max_size=60), metadata, st.binary(max_size=300))
replies = st.tuples(u32, st.integers(0, 16), st.text(max_size=200), st.binary(max_size=300))


def body(frame: bytes) -> bytes:
    """A whole frame's body, checking its length prefix."""
    assert int.from_bytes(frame[:4], "big") == len(frame) - 4
    return frame[4:]


@settings(deadline=None)  # a busy machine is no failure
@given(calls)
def test_a_call_round_trips_with_its_metadata(
    call: tuple[int, int, str, list[tuple[str, str | bytes]], bytes],
) -> None:
    call_id, method, peer, pairs, request = call
    frame = encode_call(call_id, method, peer.encode(), encode_metadata(pairs), request)
    got_id, got_method, got_peer, got_metadata, got_request = decode_call(body(frame))
    assert (got_id, got_method, got_peer, got_request) == (call_id, method, peer, request)
    assert list(decode_metadata(got_metadata)) == pairs


@settings(deadline=None)  # a busy machine is no failure
@given(replies)
def test_a_reply_round_trips(reply: tuple[int, int, str, bytes]) -> None:
    assert decode_reply(body(encode_reply(*reply))) == reply


def test_long_keys_and_long_details_fit() -> None:
    """Keys past 255 bytes (grpc takes them) and details past 64 KiB (a handler's exception text)."""
    pairs: list[tuple[str, str | bytes]] = [("k" * 300, "v" * 16000)]
    assert list(decode_metadata(encode_metadata(pairs))) == pairs
    assert decode_reply(body(encode_reply(3, 2, "d" * 70000, b""))) == (3, 2, "d" * 70000, b"")


def test_binary_metadata_stays_bytes_and_text_metadata_becomes_str() -> None:
    pairs: list[tuple[str, str | bytes]] = [("token", "abc"), ("trace-bin", b"\xff\x00\x80"), ("empty", "")]
    assert list(decode_metadata(encode_metadata(pairs))) == pairs


@settings(deadline=None)  # a busy machine is no failure
@given(
    st.lists(
        st.one_of(
            calls.map(lambda c: encode_call(c[0], c[1], c[2].encode(), encode_metadata(c[3]), c[4])),
            replies.map(lambda r: encode_reply(*r)),
        ),
        max_size=5,
    ),
    st.data(),
)
def test_frames_cut_anywhere_come_out_whole_and_in_order(frames: list[bytes], data: st.DataObject) -> None:
    stream = b"".join(frames)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    buffer = FrameBuffer()
    got: list[bytes] = []
    for start, end in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        got += buffer.feed(stream[start:end])
    assert got == [body(frame) for frame in frames]


def test_frames_cut_at_every_byte_boundary() -> None:
    frames = [
        encode_call(1, 2, b"127.0.0.1:5", encode_metadata([("token", "t"), ("x-bin", b"\0")]), b"\x0a\x01k"),
        encode_reply(1, 0, "", b"\x12\x00"),
        encode_reply(7, 3, "etcdserver: key is not provided", b""),
        encode_call(2**32 - 1, 0, b"", b"", b""),
    ]
    stream = b"".join(frames)
    expected = [body(frame) for frame in frames]
    for cut in range(len(stream) + 1):
        buffer = FrameBuffer()
        assert buffer.feed(stream[:cut]) + buffer.feed(stream[cut:]) == expected, cut
    buffer = FrameBuffer()
    assert [got for byte in range(len(stream)) for got in buffer.feed(stream[byte : byte + 1])] == expected


def test_a_length_no_frame_has_is_refused() -> None:
    with pytest.raises(ValueError, match="a frame of 4294967295 bytes"):
        FrameBuffer().feed(b"\xff\xff\xff\xff")


def test_methods_number_etcds_services_and_mark_the_streams() -> None:
    assert [method.number for method in METHODS] == list(range(len(METHODS)))
    assert CANCEL not in {method.number for method in METHODS}
    assert all(BY_PATH[method.path] is method for method in METHODS)
    assert BY_PATH["/etcdserverpb.KV/Range"].unary and BY_PATH["/v3lockpb.Lock/Lock"].unary
    streams = {method.path for method in METHODS if not method.unary}
    assert streams == {
        "/etcdserverpb.KV/RangeStream",  # in etcdpy's proto; served by no member (UNIMPLEMENTED)
        "/etcdserverpb.Watch/Watch",
        "/etcdserverpb.Lease/LeaseKeepAlive",
        "/etcdserverpb.Maintenance/Snapshot",
        "/v3electionpb.Election/Observe",
    }
