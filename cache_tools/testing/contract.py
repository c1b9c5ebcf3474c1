"""The backend contract suite: what every adapter must guarantee, as pytest tests you can run
on your own adapter (as dogpile.cache ships its backend tests). cache_tools's own adapters run
exactly this suite.

Subclass :class:`BackendContract` in a test module of yours and give it the alias to test, one
whose state is shared by every process (the suite forks worker processes)::

    # tests/test_my_adapter.py
    import pytest
    from cache_tools.testing.contract import BackendContract

    class TestMyCache(BackendContract):
        @pytest.fixture
        def contract_alias(self):
            return "mycache"     # in CACHES, with CACHE_TOOLS["ADAPTERS"] naming your adapter

It needs pytest and pytest-django, and a fork start method (Linux, macOS with ``fork``).
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import math
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
import uuid
from typing import Any

import pytest
from django.conf import settings
from django.core.cache import caches

from .. import (
    Call,
    LockError,
    LockLost,
    LockTimeout,
    cache_aside,
    lock,
    lock_decorator,
    stats,
    update,
)
from ..backends import get_backend
from ..locks import Lock
from .processes import FORK, run_processes
from .tags_contract import TagsContract

__all__ = ["BackendContract", "run_processes"]


# Run by test_start_up_imports_what_a_first_call_needs_and_connects_nowhere in a fresh
# interpreter: settings from argv, then Django's start-up, then first calls. Sockets' connect
# is wrapped to record where it goes (it still connects).
_FIRST_CALLS = """
import base64, json, pickle, socket, sys
connected = []
_connect = socket.socket.connect
def connect(self, address):
    connected.append(repr(address))
    return _connect(self, address)
socket.socket.connect = connect
import django
from django.conf import settings
settings.configure(INSTALLED_APPS=["cache_tools"], **pickle.loads(base64.b64decode(sys.argv[1])))
django.setup()
at_start = list(connected)
from django.core.cache import cache
from cache_tools import cache_aside, lock, stats
before = set(sys.modules)
@cache_aside(timeout=60, key_maker="start-up:{n}")
def first(n):
    return n
first(1), first(1)
with lock("start-up", timeout=5):
    cache.set("start-up", 1, 5)
stats.flush()
print(json.dumps([at_start, sorted(set(sys.modules) - before), connected]))
"""


def _hold_until_killed(alias: str, name: str, ready: Any) -> None:
    with lock(name, cache=alias, timeout=1):
        ready.set()
        threading.Event().wait()


def _hold_in_thread(name: str, alias: str) -> tuple[threading.Event, threading.Thread]:
    """Hold ``lock(name)`` in another thread until the returned event is set."""
    taken, done = threading.Event(), threading.Event()

    def run() -> None:
        with lock(name, cache=alias):
            taken.set()
            done.wait(10)

    thread = threading.Thread(target=run)
    thread.start()
    assert taken.wait(5)
    return done, thread


class BackendContract(TagsContract):
    """The guarantees of locks, cache-aside, tags and ``update()`` on one shared alias."""

    @pytest.fixture
    def contract_alias(self) -> str:
        raise NotImplementedError("define a contract_alias fixture returning the alias to test")

    @pytest.fixture
    def name(self) -> str:
        return f"contract-{uuid.uuid4().hex[:12]}"

    # Locks -------------------------------------------------------------------------------

    def test_lock_serialises_processes(self, contract_alias: str, name: str) -> None:
        cache = caches[contract_alias]
        for key in ("counter", "active", "overlaps"):
            cache.set(f"{name}:{key}", 0, None)

        @lock_decorator(key_maker=name, cache=contract_alias, timeout=10)
        def increment() -> None:
            cache = caches[contract_alias]
            if cache.incr(f"{name}:active") > 1:
                cache.incr(f"{name}:overlaps")
            # incr(0) reads the primary: Sentinel clients send plain gets to a replica, which
            # may not have the last write yet.
            value = cache.incr(f"{name}:counter", 0)
            time.sleep(0.0005)  # widen the race window
            cache.set(f"{name}:counter", value + 1, None)
            cache.decr(f"{name}:active")

        def worker(index: int, barrier: Any) -> None:
            barrier.wait()
            for _ in range(15):
                increment()

        run_processes(6, worker)
        assert cache.incr(f"{name}:counter", 0) == 90
        assert cache.incr(f"{name}:overlaps", 0) == 0

    def test_fences_increase_and_reentry_fails(self, contract_alias: str, name: str) -> None:
        fences = []
        for _ in range(5):
            with lock(name, cache=contract_alias, timeout=5) as handle:
                fences.append(handle.fence)
                with pytest.raises(LockError, match="already held"):
                    lock(name, cache=contract_alias).acquire()
        assert all(a < b for a, b in itertools.pairwise(fences))  # type: ignore[operator]

    def test_release_never_deletes_another_owners_lock(
        self, contract_alias: str, name: str
    ) -> None:
        backend = get_backend(contract_alias)
        with pytest.raises(LockLost), lock(name, cache=contract_alias, timeout=5) as handle:
            backend.delete(handle.keys.lock)
            assert backend.acquire(handle.keys, "another-owner", 5, False).taken
        assert backend.owner(handle.keys) == "another-owner"  # survived our release
        assert backend.release(handle.keys, "another-owner")

    def test_killed_holder_is_replaced_after_its_ttl(self, contract_alias: str, name: str) -> None:
        ready = FORK.Event()
        holder = FORK.Process(target=_hold_until_killed, args=(contract_alias, name, ready))
        holder.start()
        assert ready.wait(10)
        os.kill(holder.pid, signal.SIGKILL)  # type: ignore[arg-type]
        killed = time.monotonic()
        holder.join()
        with lock(name, cache=contract_alias, blocking_timeout=10):
            waited = time.monotonic() - killed
        # The TTL (1 s), one bounded wait or poll (1 s at most), whole-second TTLs on some
        # servers (1 s more), and scheduling.
        assert waited <= 3.5, waited

    def test_expired_lock_taken_over_raises_lock_lost_and_spares_the_new_owner(
        self, contract_alias: str, name: str
    ) -> None:
        first = lock(name, timeout=0.5, cache=contract_alias, auto_renew=False)
        taken, done = threading.Event(), threading.Event()
        fences = []

        def second_owner() -> None:  # another thread: waits for the first lock's TTL to end
            with lock(name, timeout=10, cache=contract_alias, blocking_timeout=5) as second:
                fences.append(second.fence)
                taken.set()
                done.wait(10)

        thread = threading.Thread(target=second_owner)
        with pytest.raises(LockLost, match="lost while held"), first:
            thread.start()
            assert taken.wait(5)
        try:
            assert fences[0] > first.fence  # type: ignore[operator]
            assert first.locked()  # the first holder's release left the new owner's lock alone
        finally:
            done.set()
            thread.join()
        assert not first.locked()

    def test_same_thread_takes_a_lock_again_after_it_expired(
        self, contract_alias: str, name: str
    ) -> None:
        first = Lock(name, timeout=0.3, cache=contract_alias, auto_renew=False)
        assert first.acquire()
        deadline = time.monotonic() + 5
        while first.locked():
            assert time.monotonic() < deadline, "the lock never expired"
            time.sleep(0.02)  # the server's TTL: there is no event for an expiry
        second = Lock(name, timeout=5, cache=contract_alias)
        assert second.acquire(blocking_timeout=0)  # not "already held by this thread"
        assert first.lost
        second.release()

    def test_on_timeout_modes(self, contract_alias: str, name: str) -> None:
        calls = []

        def make(on_timeout: Any, blocking_timeout: float = 0.3) -> Any:
            def guarded(x: str) -> str:
                calls.append(x)
                return "ran"

            decorator: Any = lock_decorator(
                key_maker=lambda x: x,
                cache=contract_alias,
                blocking_timeout=blocking_timeout,
                on_timeout=on_timeout,
            )
            return decorator(guarded)

        done, thread = _hold_in_thread(name, contract_alias)
        try:
            started = time.monotonic()
            with pytest.raises(LockTimeout, match=rf"{name}.*within 0.3s"):
                make("raise")(name)
            assert 0.3 <= time.monotonic() - started < 3
            assert make("skip")(name) is None
            assert make(lambda x: f"fallback {x}")(name) == f"fallback {name}"
            assert make("skip", blocking_timeout=0)(name) is None
            assert make("raise").is_locked(name)
            assert calls == []
        finally:
            done.set()
            thread.join()
        assert not make("raise").is_locked(name)
        assert make("raise")(name) == "ran"

    # Async -------------------------------------------------------------------------------

    def test_async_callers_get_the_same_guarantees(self, contract_alias: str, name: str) -> None:
        """On the adapter's async twin: an ``async def`` locked function never overlaps with
        itself, and a cold entry is computed once for 16 coroutines (a second event loop
        reads what the first stored)."""
        inside, overlaps, computed = [0], [0], [0]

        @lock_decorator(key_maker=lambda i: name, cache=contract_alias, timeout=10)
        async def locked(i: int) -> int:
            inside[0] += 1
            overlaps[0] += inside[0] > 1
            await asyncio.sleep(0.01)
            inside[0] -= 1
            return i

        @cache_aside(timeout=60, cache=contract_alias, key_maker=lambda: f"{name}:async")
        async def cold() -> str:
            computed[0] += 1
            await asyncio.sleep(0.1)
            return "value"

        async def both() -> tuple[list[int], list[str]]:
            ran = await asyncio.gather(*(locked(i) for i in range(8)))
            return list(ran), list(await asyncio.gather(*(cold() for _ in range(16))))

        ran, values = asyncio.run(both())
        assert ran == list(range(8)) and overlaps == [0]
        assert values == ["value"] * 16 and computed == [1]
        assert asyncio.run(cold()) == "value" and computed == [1]  # another loop, its twin

    # Cache-aside -------------------------------------------------------------------------

    def test_cold_key_is_computed_once(self, contract_alias: str, name: str) -> None:
        caches[contract_alias].set(f"{name}:n", 0, None)

        @cache_aside(timeout=60, cache=contract_alias, key_maker=lambda: name)
        def slow() -> str:
            caches[contract_alias].incr(f"{name}:n")
            time.sleep(0.2)
            return "value"

        def worker(index: int, barrier: Any) -> str:
            barrier.wait()
            return slow()

        assert run_processes(12, worker) == ["value"] * 12
        assert caches[contract_alias].get(f"{name}:n") == 1
        info = slow.cache_info()
        assert info.computations == 1 and info.misses == 1 and info.hits == 11

    def test_an_unstorable_result_does_not_queue_its_waiters(
        self, contract_alias: str, name: str
    ) -> None:
        """Waiters for a result that cannot be stored are released at once and compute side
        by side, instead of each waiting for the last (four callers: about two computations'
        time, not four). The computation outlasts a polling waiter's longest pause (150 ms)
        several times over, so that a busy machine's scheduling does not read as queueing."""
        journal = f"{name}:computed"

        @cache_aside(timeout=60, cache=contract_alias, key_maker=lambda: name, cache_none=False)
        def nothing() -> None:
            began = time.time()
            time.sleep(0.8)
            update(
                journal, lambda runs: [*(runs or []), (began, time.time())], cache=contract_alias
            )

        def worker(index: int, barrier: Any) -> None:
            barrier.wait()
            nothing()

        run_processes(4, worker)
        first, *others = sorted(caches[contract_alias].get(journal))
        assert len(others) == 3 and all(began >= first[1] - 0.05 for began, _ in others)
        assert max(began for began, _ in others) < min(ended for _, ended in others)

    @pytest.mark.parametrize("falsy", [None, 0, "", [], False])
    def test_falsy_values_are_hits(self, contract_alias: str, name: str, falsy: Any) -> None:
        calls = []

        @cache_aside(timeout=60, cache=contract_alias, key_maker=lambda: name)
        def value() -> Any:
            calls.append(1)
            return falsy

        assert value() == falsy and value() == falsy and calls == [1]

    def test_invalidation_and_refresh(self, contract_alias: str, name: str) -> None:
        source = {"v": 1}

        @cache_aside(timeout=60, cache=contract_alias, key_maker=lambda k: (name, k))
        def read(k: int) -> int:
            return source["v"] + k

        assert read(0) == 1
        source["v"] = 10
        assert read(0) == 1
        assert read.invalidate(0) is True and read(0) == 10
        source["v"] = 20
        assert read.refresh(0) == 20 and read(0) == 20
        source["v"] = 30
        read.invalidate_all()
        assert read(0) == 30 and read(1) == 31

    @pytest.mark.parametrize("how", ["invalidate", "invalidate_all"])
    @pytest.mark.parametrize("computation", ["miss", "refresh", "warm --force"])
    def test_an_invalidation_voids_every_computation_in_flight(
        self, contract_alias: str, name: str, computation: str, how: str
    ) -> None:
        """A computation that began before an invalidation never stores its (older) result
        afterwards, whichever path started it."""
        source = {"value": "old"}
        computing, finish = threading.Event(), threading.Event()

        @cache_aside(timeout=60, cache=contract_alias, key_maker=lambda k: (name, k))
        def read(k: int) -> str:
            value = source["value"]
            computing.set()
            assert finish.wait(10)
            return value

        finish.set()
        if computation != "miss":
            assert read(1) == "old"
        finish.clear()
        computing.clear()
        start = {
            "miss": lambda: read(1),
            "refresh": lambda: read.refresh(1),
            "warm --force": lambda: read.warm_call(Call(1), force=True),
        }[computation]
        thread = threading.Thread(target=start)
        thread.start()
        try:
            assert computing.wait(10)
            source["value"] = "new"  # the data changes, then the cache is told
            if how == "invalidate":
                read.invalidate(1)
            else:
                read.invalidate_all()
        finally:
            finish.set()
            thread.join()
        assert read(1) == "new"

    def test_cache_key_is_the_servers_key(self, contract_alias: str, name: str) -> None:
        """The key ``cache_key()`` names is the one the server stores (``KEY_PREFIX`` and
        ``VERSION`` applied), on every backend."""

        @cache_aside(timeout=60, cache=contract_alias, key_maker=lambda: name)
        def value() -> str:
            return name

        value()
        key = value.cache_key()
        backend = get_backend(contract_alias)
        prefix = caches[contract_alias].make_key("\x00").partition("\x00")[0]
        assert key.startswith(prefix) and backend.exists(key)  # type: ignore[arg-type]
        with lock(name, cache=contract_alias) as handle:
            assert handle.key.startswith(prefix) and backend.exists(handle.keys.lock)

    def test_stale_entry_is_refreshed_once_in_the_background(
        self, contract_alias: str, name: str
    ) -> None:
        caches[contract_alias].set(f"{name}:gen", 0, None)
        refreshing, finish = threading.Event(), threading.Event()

        @cache_aside(timeout=1, stale=60, cache=contract_alias, key_maker=lambda: name)
        def slowly() -> int:
            # caches[...] per call: it runs in a refresh thread too (Django's caches are per
            # thread, and some clients are not thread-safe).
            generation = int(caches[contract_alias].incr(f"{name}:gen"))
            if generation > 1:
                refreshing.set()
                finish.wait(30)  # until the test lets it finish: a waiting caller would hang
            return generation

        assert slowly() == 1
        keys = slowly.flight.keys(slowly.argument_key((), {}))
        deadline = time.monotonic() + 3
        while get_backend(contract_alias).read(keys).state != "stale":
            assert time.monotonic() < deadline
            time.sleep(0.05)  # the entry's 1 s timeout passing: no event for that
        assert slowly() == 1
        assert refreshing.wait(5)
        assert [slowly() for _ in range(5)] == [1] * 5  # served stale while the refresh runs
        finish.set()
        deadline = time.monotonic() + 3
        while slowly() != 2:
            assert time.monotonic() < deadline
            time.sleep(0.01)  # the refresh stores right after it is let go
        assert caches[contract_alias].get(f"{name}:gen") == 2

    def test_statistics_sum_over_processes(self, contract_alias: str, name: str) -> None:
        @cache_aside(timeout=60, cache=contract_alias, key_maker=lambda i: (name, i))
        def square(i: int) -> int:
            return i * i

        square.cache_clear_stats()

        def worker(index: int, barrier: Any) -> list[int]:
            barrier.wait()
            return [square(i) for i in range(5)]

        run_processes(3, worker)
        info = square.cache_info()
        assert info.hits + info.misses == 15 and info.computations == info.misses == 5

    def test_forked_children_and_their_parent_never_share_a_connection(
        self, contract_alias: str, name: str
    ) -> None:
        """Children using the caches they inherited (no ``close_caches``) while their parent
        keeps calling: on a shared socket, one process would read another's replies."""

        @cache_aside(timeout=60, cache=contract_alias, key_maker=lambda i: (name, i))
        def echo(i: int) -> int:
            return i

        def calls(start: int) -> list[int]:
            return [echo(start + i) for i in range(200)]

        assert calls(0) == list(range(200))  # the parent connects, and keeps what it keeps
        stop = threading.Event()
        rounds: list[bool] = []  # the parent's: each right or not

        def parent() -> None:
            while not stop.is_set():
                rounds.append(calls(0) == list(range(200)))

        thread = threading.Thread(target=parent)
        thread.start()
        try:

            def worker(index: int, barrier: Any) -> list[int]:
                barrier.wait()
                return calls(0) + calls(1000 * (index + 1))

            results = run_processes(3, worker, fresh_caches=False)
        finally:
            stop.set()
            thread.join()
        expected = [list(range(200)) + list(range(1000 * i, 1000 * i + 200)) for i in (1, 2, 3)]
        assert results == expected
        assert rounds and all(rounds)

    @pytest.mark.parametrize("forgotten", ["counts and registries", "registries alone"])
    def test_names_the_server_forgot_are_registered_again(
        self, contract_alias: str, name: str, forgotten: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A process's record of having registered a function or lock is a cache of the
        server's registry. When the server loses the counts too (``clear_cache``, a restart),
        the next flush sees them start from zero and registers the names again; when eviction
        takes a registry alone, the next check of it does (every ``stats._CHECK_EVERY``
        seconds: 0 here, and never in the first case, so that each case tests its own way)."""
        backend = get_backend(contract_alias)
        alone = forgotten == "registries alone"
        monkeypatch.setattr(stats, "_CHECK_EVERY", 0.0 if alone else math.inf)

        @cache_aside(timeout=60, cache=contract_alias, key_maker=lambda: name)
        def noted() -> str:
            return name

        def use_both() -> None:
            noted()
            with lock(name, cache=contract_alias):
                pass
            stats.flush()

        use_both()
        registries = [backend.registry_key(kind) for kind in ("functions", "locks")]
        for registry in registries:
            assert backend.has_names(registry)
            backend.delete(registry)
            assert not backend.has_names(registry)
        if not alone:
            backend.delete_counts(backend.stats_key(noted.flight.function_id), stats.FIELDS)
            backend.delete(backend.lock_counts_key())
        use_both()
        assert noted.flight.function_id in backend.read_names(registries[0])
        assert name in backend.read_lock_counts(stats.LOCK_FIELDS)

    # Start-up ----------------------------------------------------------------------------

    def test_start_up_imports_what_a_first_call_needs_and_connects_nowhere(
        self, contract_alias: str
    ) -> None:
        """In a fresh interpreter with this alias alone: ``django.setup()`` opens no
        connection, and the first hit, miss, lock and statistics flush import no module (a
        process forking while another thread imported one would give its child half of it:
        :meth:`Backend.prepare`)."""
        configured = {
            "CACHES": {"default": settings.CACHES[contract_alias]},
            "CACHE_TOOLS": {**getattr(settings, "CACHE_TOOLS", {}), "CACHE": "default"},
        }
        child = subprocess.run(
            [sys.executable, "-c", _FIRST_CALLS, base64.b64encode(pickle.dumps(configured))],
            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert child.returncode == 0, child.stderr[-3000:]
        connected_at_start, imported, connected_after = json.loads(child.stdout)
        assert connected_at_start == [], "django.setup() connected"
        assert imported == [], "the first calls imported modules"
        assert connected_after, "no connection seen at all: the check did not observe sockets"

    # update() ----------------------------------------------------------------------------

    def test_update_loses_nothing(self, contract_alias: str, name: str) -> None:
        def worker(index: int, barrier: Any) -> None:
            barrier.wait()
            for _ in range(40):
                update(name, lambda old: (old or 0) + 1, timeout=60, cache=contract_alias)

        run_processes(4, worker)
        assert caches[contract_alias].get(name) == 160

    def test_errors_in_the_function_are_the_callers(self, contract_alias: str, name: str) -> None:
        calls = []

        def broken(old: Any) -> Any:
            calls.append(old)
            raise OSError("disk full, in the caller's own code")

        with pytest.raises(OSError, match="caller's own code"):
            update(name, broken, cache=contract_alias)
        assert calls == [None]
        with lock(f"update:{name}", cache=contract_alias, blocking_timeout=0):
            pass  # and the update lock, where there is one, was released
