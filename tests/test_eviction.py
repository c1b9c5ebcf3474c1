"""Locks on a server that evicts keys: ``check --deploy`` and a one-time warning say so, locks
can live on an alias of their own (``CACHE_TOOLS["LOCKS"]``), and whatever eviction drops,
every lock outcome is a documented exception, never a raw error or a lock held by nobody."""

from __future__ import annotations

import json
import logging
import os
import random
import threading
import time
from collections import Counter

import pytest
import redis
from django.conf import settings
from django.core.cache import close_caches
from django.core.checks import run_checks
from django.test import override_settings

from cache_tools import LockLost, LockTimeout, LockUnavailable, lock, lock_decorator
from cache_tools.backends import get_backend
from tests.conftest import FORK


@pytest.fixture
def evicting(private_redis, unique):
    """An alias on the run's private server, set to evict with ``request.param``'s policy."""
    client = redis.Redis.from_url(private_redis.url)
    alias = {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": private_redis.url,
        "KEY_PREFIX": f"evict-{unique}",
        "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 1, "SOCKET_TIMEOUT": 1},
    }

    def policy(name):
        client.config_set("maxmemory-policy", name)

    with override_settings(CACHES={**settings.CACHES, "evicting": alias}):
        yield policy
    client.config_set("maxmemory-policy", "noeviction")
    client.config_set("maxmemory", 0)
    client.close()


def eviction_warnings(deploy):
    """What ``manage.py check`` says of eviction (``--deploy`` when ``deploy``)."""
    found = run_checks(include_deployment_checks=deploy)
    return [str(message) for message in found if message.id == "cache_tools.W005"]


@pytest.mark.parametrize("policy", ["allkeys-lru", "volatile-lru", "allkeys-lfu"])
def test_check_deploy_warns_when_the_locks_server_evicts(evicting, policy):
    evicting(policy)
    with override_settings(CACHE_TOOLS={"LOCKS": "evicting"}):
        (warning,) = eviction_warnings(deploy=True)
        assert policy in warning and 'CACHE_TOOLS["LOCKS"]' in warning and "evicting" in warning
        assert eviction_warnings(deploy=False) == []  # without --deploy it does not connect


def test_check_deploy_is_silent_with_noeviction(evicting):
    evicting("noeviction")
    with override_settings(CACHE_TOOLS={"LOCKS": "evicting"}):
        assert eviction_warnings(deploy=True) == []


def test_the_first_lock_on_an_evicting_alias_warns_once(evicting, caplog, unique):
    evicting("allkeys-lru")
    with caplog.at_level(logging.WARNING, logger="cache_tools.lock"):
        with lock(unique, cache="evicting"):
            pass
        deadline = time.monotonic() + 5
        while not [r for r in caplog.records if "maxmemory-policy" in r.getMessage()]:
            assert time.monotonic() < deadline, "no warning"
            time.sleep(0.01)  # the question goes to the server from a thread of its own
        with lock(unique, cache="evicting"):
            pass
        time.sleep(0.1)
    warned = [r for r in caplog.records if "maxmemory-policy allkeys-lru" in r.getMessage()]
    assert len(warned) == 1 and "evicting" in warned[0].getMessage()


def test_locks_use_the_locks_alias_unless_they_name_one(evicting, unique):
    evicting("noeviction")
    with override_settings(CACHE_TOOLS={"LOCKS": "evicting"}):
        assert lock(unique).alias == "evicting"

        @lock_decorator
        def guarded():
            return "ran"

        assert guarded() == "ran" and "evict-" in guarded.lock_key()
        assert lock(unique, cache="default").alias == "default"
    assert lock(unique).alias == "default"


def test_a_hand_over_whose_fence_was_evicted_is_claimed_with_its_ticket(unique):
    backend = get_backend()
    keys = lock(unique).keys
    client = redis.Redis.from_url(settings.REDIS_URL)
    client.set(keys.lock, "~1796000000000000", px=5000)  # handed over, its ticket popped
    client.delete(keys.fence)  # and the fence evicted meanwhile
    attempt = backend.acquire(keys, "claimer", 5, True, 1, "1796000000000000")
    assert attempt.fence == 1796000000000000  # before: None (a TypeError in acquire())
    assert backend.release(keys, "claimer")


def _contend(name, alias, journal):
    close_caches()
    outcomes = Counter()
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        try:
            with lock(name, cache=alias, timeout=2, blocking_timeout=0.5):
                time.sleep(random.uniform(0, 0.01))
            outcomes["held"] += 1
        except (LockLost, LockTimeout, LockUnavailable) as exc:
            outcomes[type(exc).__name__] += 1
        except Exception as exc:  # anything else is a bug
            outcomes[f"raw {type(exc).__name__}: {exc}"] += 1
    journal.write_text(json.dumps(outcomes))


def test_under_eviction_every_outcome_is_a_documented_one(evicting, private_redis, tmp_path):
    evicting("allkeys-lru")
    client = redis.Redis.from_url(private_redis.url)
    client.config_set("maxmemory", client.info("memory")["used_memory"] + 2_000_000)
    workers = [
        FORK.Process(target=_contend, args=("evicted", "evicting", tmp_path / f"{index}"))
        for index in range(6)
    ]
    for worker in workers:
        worker.start()
    filler = 0
    while any(worker.is_alive() for worker in workers):
        client.set(f"junk:{os.getpid()}:{filler}", b"x" * 50_000)  # evicts as it goes
        filler += 1
    outcomes = Counter()
    for index in range(6):
        outcomes.update(json.loads((tmp_path / f"{index}").read_text()))
    assert outcomes["held"] > 0
    assert not [kind for kind in outcomes if kind.startswith("raw")], outcomes
    client.config_set("maxmemory", 0)
    with lock("evicted", cache="evicting", timeout=2, blocking_timeout=3):  # usable again
        pass
    print(dict(outcomes), filler, "junk values written")


def test_a_fence_evicted_during_a_hand_off_leaves_no_raw_error_and_no_ghost(unique):
    """The release and the fence's eviction land together (one transaction): the waiter woken
    by the release finds no fence. Before: a raw TypeError in acquire(), and the lock owned by
    that waiter's token for its whole TTL."""
    from cache_tools.backends.redis_scripts import get_script
    from tests.test_locks import blocked_clients, wait_until_blocked

    client = redis.Redis.from_url(settings.REDIS_URL)
    holder = lock(unique, timeout=10)
    holder.acquire()
    outcome = []

    def wait_for_it():
        try:
            with lock(unique, timeout=10, blocking_timeout=10) as handle:
                outcome.append(handle.fence)
        except Exception as exc:
            outcome.append(exc)

    blocked = blocked_clients()
    waiters = [threading.Thread(target=wait_for_it) for _ in range(2)]  # one behind the other
    for count, waiter in enumerate(waiters, 1):
        waiter.start()
        wait_until_blocked(blocked + count)
    keys = holder.keys
    wake = "hand" if getattr(keys, "handover", False) else "one"
    with client.pipeline(transaction=True) as pipe:
        pipe.eval(get_script("lock_release").source, 1, keys.lock, holder._token, wake, 250, 0, 1)
        pipe.delete(keys.fence)  # evicted in the same moment
        pipe.execute()
    holder._forget()
    for waiter in waiters:
        waiter.join(15)
    assert len(outcome) == 2 and all(isinstance(fence, int) for fence in outcome), outcome
    with lock(unique, timeout=10, blocking_timeout=0):  # nobody owns it now
        pass
