"""The hot commands' own packing (cache_tools.backends._wire): byte for byte what redis-py
sends, for any text, bytes or number; anything else is left to redis-py."""

from typing import Any

from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from cache_tools.backends import get_backend
from cache_tools.backends._wire import _pack

parts = st.lists(
    st.one_of(st.text(), st.binary(), st.integers(), st.floats()), min_size=1, max_size=8
)


def unconnected() -> Any:
    """A connection made as the alias's pool makes them (it packs; it never connects)."""
    pool = get_backend().client().connection_pool
    return pool.connection_class(**pool.connection_kwargs)


@hypothesis_settings(max_examples=300, deadline=None)
@given(parts)
def test_commands_are_packed_as_redis_py_packs_them(parts):
    connection = unconnected()
    expected = b"".join(bytes(chunk) for chunk in connection.pack_command("EVALSHA", *parts))
    assert _pack(["EVALSHA", *parts]) == expected


def test_values_redis_py_refuses_or_converts_are_left_to_it():
    assert _pack(["SET", "k", True]) is None
    assert _pack(["SET", "k", None]) is None
    assert _pack(["SET", "k", memoryview(b"v")]) is None
