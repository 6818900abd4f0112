"""The public API of etcdpy.client.concurrency: what the CLI's lock/elect and the STM build on."""

from __future__ import annotations

import inspect

import etcdpy.client.concurrency as concurrency
from etcdpy.api.errors import EtcdError


def test_all_names_exist_once() -> None:
    assert sorted(concurrency.__all__) == sorted(set(concurrency.__all__))
    for name in concurrency.__all__:
        assert hasattr(concurrency, name), name


def test_recipe_errors_are_client_errors() -> None:
    for error in (concurrency.SessionExpired, concurrency.NotLeader, concurrency.NoLeader):
        assert issubclass(error, EtcdError)
        assert error().text, "each error carries etcd's text"


def test_the_promised_methods_exist() -> None:
    promised = {
        concurrency.Session: {"add_lost_callback", "close", "__enter__", "__exit__"},
        concurrency.Mutex: {"lock", "try_lock", "unlock", "is_owner", "__enter__", "__exit__"},
        concurrency.Election: {"campaign", "proclaim", "resign", "leader", "observe"},
        concurrency.Observation: {"__iter__", "__next__", "close"},
    }
    for cls, methods in promised.items():
        have = {name for name, _ in inspect.getmembers(cls, inspect.isfunction)}
        assert methods <= have, (cls.__name__, methods - have)
    session_params = inspect.signature(concurrency.Session).parameters
    assert session_params["ttl"].kind is inspect.Parameter.KEYWORD_ONLY
    assert session_params["lease_id"].kind is inspect.Parameter.KEYWORD_ONLY
    assert "timeout" in inspect.signature(concurrency.Mutex.lock).parameters
    assert "timeout" in inspect.signature(concurrency.Election.campaign).parameters


def test_each_recipe_documents_a_usage_example() -> None:
    for cls in (concurrency.Session, concurrency.Mutex, concurrency.Election, concurrency.Observation):
        doc = inspect.getdoc(cls) or ""
        assert f"{cls.__name__}(" in doc or "observe()" in doc, cls.__name__
        assert "\n    " in doc, f"{cls.__name__}: an indented example"
