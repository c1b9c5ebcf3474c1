"""The hot path's shortcuts give what the libraries they skip would: commands packed by
cache_tools.backends._wire are byte for byte redis-py's, values decoded without
django-redis's int() attempt are django-redis's."""

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


values = st.recursive(
    st.one_of(
        st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(), st.binary()
    ),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children),
    max_leaves=8,
)


@hypothesis_settings(max_examples=300, deadline=None)
@given(values)
def test_the_decode_shortcut_agrees_with_django_redis(value):
    """Pickles skip django-redis's int() attempt; everything it stores decodes as it would
    decode it (ints are stored as digits, not pickled)."""
    from django.core.cache import cache

    inner = cache.client
    payload = inner.encode(value)
    payload = payload if isinstance(payload, bytes) else str(payload).encode()
    codec = get_backend().connection()[1]
    assert codec.decode != inner.decode  # the shortcut is in use on this alias
    assert codec.decode(payload) == inner.decode(payload) == value


def test_pools_the_wire_must_not_use_are_left_to_the_client():
    """redis-py's client-side cache (Redis >= 7.4, so not run against a server here) answers
    reads on its connections by the command last given to send_command; single-connection and
    cluster clients have no pool of their own. The wire leaves all of them to the client."""
    import redis
    from django.conf import settings
    from redis.cache import CacheConfig

    from cache_tools.backends._wire import _pool_of

    plain = redis.Redis()
    assert _pool_of(plain) is plain.connection_pool
    assert _pool_of(redis.Redis(protocol=3, cache_config=CacheConfig())) is None
    single = redis.Redis.from_url(settings.REDIS_URL, single_connection_client=True)
    assert _pool_of(single) is None
    single.close()
    assert _pool_of(redis.RedisCluster.__new__(redis.RedisCluster)) is None
