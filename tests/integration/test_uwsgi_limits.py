"""Writes a uWSGI cache refuses (value over its blocksize, cache full, long keys), inside a real
uWSGI with a deliberately small cache2."""

import pytest
from django.conf import settings

from testproject.uwsgi_site import start_site, stop_site


@pytest.fixture(scope="module")
def small_cache_site(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("limits")
    prefix = f"{settings.TEST_PREFIX}-limits"
    running = start_site(
        tmp, "preforked", prefix, settings.REDIS_URL, ini="tests/integration/limits.ini"
    )
    yield running
    stop_site(running)


def test_a_value_over_the_blocksize_is_returned_uncached(small_cache_site):
    result = small_cache_site.request("/probe/big-value").json()
    assert result == {
        "returned": [5000, 5000],
        "cached": False,
        "errors": 2,
        "entry_lock_left": False,  # released, so the next caller does not wait
    }
    log = small_cache_site.log.read_text()
    assert log.count("not caching the result of tests.integration.limits_app.big_value") == 1


def test_a_full_cache_refuses_locks_with_lock_unavailable_naming_the_limits(small_cache_site):
    result = small_cache_site.request("/probe/full").json()
    assert result["refused"] and "items=64" in result["refused"]
    assert result["lock"].startswith("LockUnavailable: cannot take lock")
    assert "blocksize=2048" in result["lock"]


def test_every_key_django_accepts_fits_with_a_key_prefix(small_cache_site):
    assert small_cache_site.request("/probe/long-keys").json()["value"] == "long"


def test_keys_with_spaces_or_control_characters_warn_as_in_every_django_cache(small_cache_site):
    """Django's BaseCacheTests expect a CacheKeyWarning from every operation (memcached
    raises instead); before, UWSGICache said nothing. Long keys are shortened: no warning."""
    found = small_cache_site.request("/probe/key-warnings").json()
    every = ["get", "set", "add", "touch", "has_key", "delete"]
    every += ["get_many", "set_many", "delete_many", "get_or_set"]
    assert found == {"space": every, "control": every, "long": []}
