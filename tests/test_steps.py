"""The engine's and the lock's steps, fed scripted server replies: every branch in one place,
without a server (the real-server tests elsewhere check that adapters answer this way).

Each case lists the operations the steps must ask for, in order, with the reply (or the error)
each gets; the run fails if they ask for anything else or leave a reply unused."""

from __future__ import annotations

from typing import Any

import pytest

from cache_tools.backends import get_backend
from cache_tools.backends.base import HIT, MISS, STALE, Attempt, Fetched
from cache_tools.drive import COMPUTE, Steps
from cache_tools.errors import (
    BackendUnavailable,
    LockLost,
    LockUnavailable,
    OutcomeUnknown,
    StoreRefused,
)
from cache_tools.flight import NOT_STORED, UNCACHED, Flight
from cache_tools.locks import Lock

pytestmark = pytest.mark.django_db  # transactions.wrote() looks at the connection

ALIAS = "locmem"  # only its key names are used: no operation reaches it


def run(steps: Steps[Any], *script: tuple[str, Any]) -> Any:
    """Drive ``steps``, answering each operation from ``script`` (name, reply or exception);
    ``"compute"`` is the caller's function."""
    pending = list(script)
    value: Any = None
    error: BaseException | None = None
    while True:
        try:
            op = steps.send(value) if error is None else steps.throw(error)
        except StopIteration as done:
            assert not pending, f"replies left unused: {pending}"
            return done.value
        asked = "compute" if op is COMPUTE else op.name
        assert pending, f"the steps asked for {asked} after the script ended"
        expected, reply = pending.pop(0)
        assert asked == expected, f"asked for {asked}, the script expected {expected}"
        value, error = (None, reply) if isinstance(reply, BaseException) else (reply, None)


@pytest.fixture
def flight():
    return Flight("tests.steps", ALIAS, timeout=60, stale=30, lock=True, lock_timeout=5)


@pytest.fixture
def keys(flight, unique):
    return flight.keys(unique)


def miss(token_taken: bool = True) -> Fetched:
    return Fetched(MISS, fence=17 if token_taken else None, generation=3)


def test_a_miss_takes_the_lock_computes_and_stores(flight, keys):
    steps = flight._after_read(flight.backend, keys, Fetched(MISS))
    state, value, refresh = run(steps, ("fetch", miss()), ("compute", (42, 42)), ("store", True))
    assert (state, value, refresh) == (MISS, 42, None)


def test_an_entry_stored_meanwhile_is_a_hit(flight, keys):
    steps = flight._after_read(flight.backend, keys, Fetched(MISS))
    assert run(steps, ("fetch", Fetched(HIT, value=7))) == (HIT, 7, None)


def test_a_miss_while_another_computes_waits_then_reads_its_result(flight, keys):
    steps = flight._after_read(flight.backend, keys, Fetched(MISS))
    busy = Fetched(MISS, wait=0.2, generation=3)
    result = run(steps, ("fetch", busy), ("wait", None), ("fetch", Fetched(HIT, value=8)))
    assert result == (HIT, 8, None)


def test_a_stale_entry_is_served_and_refreshed_in_the_background(flight, keys):
    steps = flight._after_read(flight.backend, keys, Fetched(STALE, value=5, generation=3))
    assert run(steps) == (STALE, 5, (3, None))  # no request: the refresh is the driver's


def test_a_store_refused_returns_the_result_uncached_and_lets_callers_compute(flight, keys):
    steps = flight._after_read(flight.backend, keys, Fetched(MISS))
    result = run(
        steps,
        ("fetch", miss()),
        ("compute", (9, 9)),
        ("store", StoreRefused("maxmemory")),
        ("release", True),  # with uncacheable > 0: the next callers do not queue
    )
    assert result == (UNCACHED, 9, None)


def test_an_outage_while_storing_returns_the_result_and_releases_the_lock(flight, keys):
    steps = flight._after_read(flight.backend, keys, Fetched(MISS))
    result = run(
        steps,
        ("fetch", miss()),
        ("compute", (4, 4)),
        ("store", BackendUnavailable("down")),
        ("release", BackendUnavailable("still down")),  # then released when it answers
    )
    assert result == (UNCACHED, 4, None)


def test_a_lock_lost_before_the_store_still_gives_the_caller_its_result(flight, keys):
    steps = flight._after_read(flight.backend, keys, Fetched(MISS))
    # store() returns False: the fence moved on (invalidated or taken over), nothing written.
    result = run(steps, ("fetch", miss()), ("compute", (6, 6)), ("store", False))
    assert result == (MISS, 6, None)


def test_an_unknown_outcome_computes_without_the_cache(flight, keys):
    steps = flight._after_read(flight.backend, keys, Fetched(MISS))
    result = run(steps, ("fetch", OutcomeUnknown("no reply")), ("compute", (3, 3)))
    assert result == (UNCACHED, 3, None)


def test_an_unreachable_server_before_the_read_computes_without_it(flight, keys):
    steps = flight._after_read(flight.backend, keys, BackendUnavailable("refused"))
    assert run(steps, ("compute", (2, 2))) == (UNCACHED, 2, None)


def test_a_failing_computation_releases_the_lock_and_raises(flight, keys):
    steps = flight._after_read(flight.backend, keys, Fetched(MISS))
    with pytest.raises(ZeroDivisionError):
        run(steps, ("fetch", miss()), ("compute", ZeroDivisionError()), ("release", True))


def test_a_result_not_to_be_stored_is_not_stored(flight, keys):
    steps = flight._after_read(flight.backend, keys, Fetched(MISS))
    result = run(
        steps,
        ("fetch", miss()),
        ("compute", (None, NOT_STORED)),
        ("release", True),  # every waiter wakes: this process's take the result
    )
    assert result == (MISS, None, None)


def test_a_refresh_finding_the_entry_fresh_again_releases_at_once(flight, keys):
    steps = flight._refresh(flight.backend, keys, 3, None)
    assert (
        run(
            steps,
            ("acquire", Attempt(21)),
            ("read", Fetched(HIT, value=1)),
            ("release", True),
        )
        is None
    )


def test_a_refresh_finding_another_refresher_stays_quiet_that_long(flight, keys):
    steps = flight._refresh(flight.backend, keys, 3, None)
    assert run(steps, ("acquire", Attempt(None, 0.4))) == 0.4


@pytest.fixture
def handle(unique):
    return Lock(unique, timeout=5, blocking_timeout=2, cache=ALIAS, auto_renew=False)


def test_a_free_lock_is_taken_with_its_fence(handle):
    assert run(handle._acquire(None), ("acquire", Attempt(1001)))
    assert handle.fence == 1001 and handle.held
    run(handle._release(), ("release", True))
    assert not handle.held


def test_a_waiter_claims_the_lock_handed_to_it(handle):
    taken = run(
        handle._acquire(None),
        ("acquire", Attempt(None, 0.5)),
        ("wait", "1796000000000000"),  # the hand-over's ticket
        ("acquire", Attempt(1796000000000000)),
    )
    assert taken and handle.fence == 1796000000000000
    run(handle._release(), ("release", True))


def test_try_once_gives_up_without_waiting(handle):
    assert run(handle._acquire(0), ("acquire", Attempt(None, 0.5))) is False


def test_a_server_dying_under_a_wait_asks_again(handle):
    taken = run(
        handle._acquire(None),
        ("acquire", Attempt(None, 0.5)),
        ("wait", BackendUnavailable("failover")),
        ("acquire", Attempt(1002)),
    )
    assert taken
    run(handle._release(), ("release", True))


def test_an_unreachable_server_is_lock_unavailable(handle):
    with pytest.raises(LockUnavailable) as raised:
        run(handle._acquire(None), ("acquire", BackendUnavailable("refused")))
    assert not raised.value.outcome_unknown


def test_a_lock_lost_while_held_raises_at_release(handle):
    run(handle._acquire(None), ("acquire", Attempt(1003)))
    with pytest.raises(LockLost):
        run(handle._release(), ("release", False))
    assert handle.lost and not handle.held


def test_a_release_the_server_cannot_hear_now_is_left_to_the_orphans(handle):
    run(handle._acquire(None), ("acquire", Attempt(1004)))
    run(handle._release(), ("release", BackendUnavailable("down")))  # no error: retried later
    assert not handle.held


def test_re_entry_asks_the_server_first(handle):
    run(handle._acquire(None), ("acquire", Attempt(1005)))
    token = handle._token
    with pytest.raises(Exception, match="already held by this handle"):
        run(handle._acquire(None), ("owner", token))
    # Forgotten by the server (expired, evicted): the handle takes it anew.
    assert run(handle._acquire(None), ("owner", None), ("acquire", Attempt(1006)))
    assert handle.fence == 1006
    run(handle._release(), ("release", True))


def test_the_adapter_is_never_reached(handle):
    """The script above is all these steps saw: the alias holds no lock."""
    assert get_backend(ALIAS).owner(handle.keys) is None
