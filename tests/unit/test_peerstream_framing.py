"""The peer stream's framing (consensus/peerstream.py): round trips, and what a broken stream raises."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from etcdpy.api.raftpb import raft_pb2 as pb
from etcdpy.server.consensus import peerstream
from etcdpy.server.consensus.peerstream import FrameDecoder, FrameError, decode_batch, encode_frames


def message(i: int, data: bytes = b"") -> pb.Message:
    entries = [pb.Entry(index=i, term=2, data=data)] if data else []
    return pb.Message(type=pb.MsgApp, to=2, term=2, index=i, entries=entries, **{"from": 1})


def decoded(frames: bytes, cuts: list[int]) -> list[pb.Message]:
    """Feed `frames` to a decoder in pieces cut at `cuts`; the messages of every frame."""
    decoder = FrameDecoder()
    messages = []
    bounds = [0, *sorted(c % (len(frames) + 1) for c in cuts), len(frames)]
    for start, end in itertools.pairwise(bounds):
        for payload in decoder.feed(frames[start:end]):
            messages.extend(decode_batch(payload))
    decoder.finish()
    return messages


@given(
    st.lists(st.lists(st.binary(max_size=300), max_size=5), min_size=1, max_size=6),
    st.lists(st.integers(min_value=0), max_size=8),
)
def test_batches_round_trip_whatever_the_read_boundaries(batches: list[list[bytes]], cuts: list[int]) -> None:
    sent = []
    stream = b""
    for batch_data in batches:
        batch = [message(len(sent) + i, data) for i, data in enumerate(batch_data)]
        sent.extend(batch)
        stream += b"".join(encode_frames(batch))
    assert decoded(stream, cuts) == sent


def test_a_frame_is_its_length_in_four_bytes_then_a_message_batch() -> None:
    (frame,) = encode_frames([message(7)])
    assert int.from_bytes(frame[:4], "big") == len(frame) - 4
    assert decode_batch(frame[4:]) == [message(7)]


def test_a_truncated_frame_is_an_error_when_the_stream_ends() -> None:
    (frame,) = encode_frames([message(1, b"x" * 100)])
    decoder = FrameDecoder()
    assert list(decoder.feed(frame[:-1])) == []
    arrived = len(frame) - 1
    with pytest.raises(
        FrameError, match=rf"the stream ended inside a frame \({arrived} bytes of it arrived\)"
    ):
        decoder.finish()


def test_a_length_over_the_limit_is_refused_before_its_bytes_arrive() -> None:
    decoder = FrameDecoder(max_bytes=1000)
    (ok,) = encode_frames([message(1)])
    delivered = []
    with pytest.raises(FrameError, match="a frame of 1001 bytes exceeds the limit of 1000"):
        delivered.extend(decoder.feed(ok + (1001).to_bytes(4, "big")))
    assert delivered == [ok[4:]]  # the frame before the bad length, and nothing after it


def test_an_http_request_on_an_open_stream_is_an_oversized_length() -> None:
    with pytest.raises(FrameError, match="exceeds the limit"):
        list(FrameDecoder().feed(b"GET / HTTP/1.1\r\n\r\n"))


def test_garbage_in_a_well_formed_frame_is_not_a_batch() -> None:
    garbage = b"\xff\xff\xff\xff\x0f"
    with pytest.raises(FrameError, match="a frame is not a raft message batch"):
        decode_batch(garbage)


def test_a_batch_over_the_limit_goes_in_several_frames(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(peerstream, "MAX_FRAME_BYTES", 300)
    batch = [message(i, b"y" * 100) for i in range(6)]
    frames = list(encode_frames(batch))
    assert len(frames) > 1
    assert all(len(f) - 4 <= 300 for f in frames)
    assert decoded(b"".join(frames), []) == batch


def test_a_single_message_over_the_limit_cannot_be_framed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(peerstream, "MAX_FRAME_BYTES", 50)
    with pytest.raises(FrameError, match=r"a raft message of \d+ bytes exceeds the frame limit"):
        list(encode_frames([message(1, b"z" * 100)]))
