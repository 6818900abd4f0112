"""The error table maps both ways: class -> (code, text) -> class."""

from __future__ import annotations

import grpc

from etcdpy.api import errors


def test_every_error_round_trips_through_its_status() -> None:
    for cls in errors.ALL:
        err = errors.from_status(cls.code, cls.message)
        assert type(err) is cls, cls.__name__
        assert err.text == cls.message


def test_messages_are_unique_and_prefixed() -> None:
    messages = [cls.message for cls in errors.ALL]
    assert len(messages) == len(set(messages))
    recipes = {cls.message for cls in errors.RECIPE_ERRORS}  # etcd's recipe texts carry no prefix
    assert all(m.startswith("etcdserver: ") for m in messages if m not in recipes)


def test_unknown_status_keeps_code_and_text() -> None:
    err = errors.from_status(grpc.StatusCode.INTERNAL, "boom")
    assert isinstance(err, errors.UnknownEtcdError)
    assert (err.status_code, err.text) == (grpc.StatusCode.INTERNAL, "boom")


def test_same_text_with_other_code_is_not_the_table_entry() -> None:
    err = errors.from_status(grpc.StatusCode.INTERNAL, errors.ErrCompacted.message)
    assert not isinstance(err, errors.ErrCompacted)
