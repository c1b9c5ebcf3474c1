import pytest
from django.core.cache import caches

from cache_tools import UpdateConflict, update


def add_many(index, barrier, key, count, alias):
    barrier.wait()
    for _ in range(count):
        update(key, lambda old: (old or 0) + 1, timeout=60, cache=alias)


@pytest.mark.parametrize("alias", ["default", "django"])
def test_concurrent_updates_lose_nothing(processes, unique, alias):
    processes(8, add_many, unique, 100, alias)
    assert caches[alias].get(unique) == 800


def test_value_is_readable_with_cache_get_and_keeps_timeout(unique, redis_client):
    assert update(unique, lambda old: {"n": 1} if old is None else old, timeout=30) == {"n": 1}
    assert caches["default"].get(unique) == {"n": 1}
    assert 0 < redis_client.pttl(caches["default"].make_key(unique)) <= 30_000


def test_conflicts_give_up_when_the_budget_runs_out(unique):
    def interfere(old):
        caches["default"].set(unique, "changed behind our back")
        return "mine"

    with pytest.raises(UpdateConflict, match=r"lost \d+ races with other writers in 0.2s"):
        update(unique, interfere, budget=0.2)


def test_bad_arguments():
    with pytest.raises(TypeError, match="callable"):
        update("k", 5)
    with pytest.raises(ValueError, match="budget must be a positive number"):
        update("k", lambda old: old, budget=-1)
