"""OpenTelemetry: spans of computations and lock waits, events on stale refreshes and
take-overs, recorded by the real SDK (an in-memory exporter); nothing on a hit; and nothing at
all, not even an import, without ``opentelemetry-api``."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from cache_tools import cache_aside, lock

EXPORTER = InMemorySpanExporter()


@pytest.fixture(scope="module", autouse=True)
def provider():
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(EXPORTER))
    trace.set_tracer_provider(provider)
    yield provider


@pytest.fixture
def spans():
    EXPORTER.clear()

    def finished(name=None):
        return [s for s in EXPORTER.get_finished_spans() if name in (None, s.name)]

    return finished


def test_a_computation_is_a_span_and_a_hit_is_none(unique, spans):
    @cache_aside(timeout=60, key_maker=lambda: unique)
    def priced():
        return 42

    tracer = trace.get_tracer("test")
    with tracer.start_as_current_span("request"):
        priced()
    (computed,) = spans("cache_tools.compute")
    assert computed.attributes["cache_tools.function"] == priced.flight.function_id
    assert computed.attributes["cache_tools.outcome"] == "stored"
    assert computed.parent.span_id == spans("request")[0].context.span_id
    EXPORTER.clear()
    priced(), priced()
    assert spans() == []


def test_what_became_of_a_computation_is_its_outcome(unique, spans):
    @cache_aside(timeout=60, key_maker=lambda: unique, cache_none=False)
    def nothing():
        return None

    @cache_aside(timeout=60, key_maker=lambda: unique + "e")
    def broken():
        raise ValueError("the caller's own bug")

    nothing()
    with pytest.raises(ValueError):
        broken()
    outcomes = {s.attributes["cache_tools.outcome"] for s in spans("cache_tools.compute")}
    assert outcomes == {"not stored", "error"}
    (failed,) = [
        s for s in spans("cache_tools.compute") if s.status.status_code == StatusCode.ERROR
    ]
    assert failed.events[0].name == "exception"


def test_a_lock_wait_is_a_span_with_its_fence(unique, spans):
    holding, release = threading.Event(), threading.Event()

    def hold():
        with lock(unique, timeout=10):
            holding.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    assert holding.wait(10)
    threading.Timer(0.1, release.set).start()
    with lock(unique, timeout=10) as handle:
        pass
    holder.join()
    (waited,) = spans("cache_tools.lock.wait")
    assert waited.attributes["cache_tools.fence"] == handle.fence
    assert waited.attributes["cache_tools.outcome"] == "acquired"
    assert (waited.end_time - waited.start_time) / 1e9 >= 0.05
    EXPORTER.clear()
    with lock(unique + "free", timeout=10):
        pass
    assert spans("cache_tools.lock.wait") == []  # taken at once: no wait


def test_a_stale_refresh_is_an_event_on_the_callers_span(unique, spans):
    @cache_aside(timeout=0.2, stale=60, key_maker=lambda: unique)
    def news():
        return time.time()

    news()
    deadline = time.monotonic() + 5
    tracer = trace.get_tracer("test")
    while True:
        EXPORTER.clear()
        with tracer.start_as_current_span("request"):
            news()
        (request,) = spans("request")
        if request.events:
            break
        assert time.monotonic() < deadline, "never stale"
    assert [e.name for e in request.events] == ["cache_tools.stale_refresh"]


def test_a_take_over_is_an_event(unique, spans):
    """A computation whose holder never finishes (its lock expires): the waiter takes over."""

    @cache_aside(timeout=60, key_maker=lambda: unique, lock_timeout=0.3)
    def slow():
        return "value"

    backend = slow.flight.backend
    keys = slow.flight.keys(slow.argument_key((), {}))
    assert backend.acquire(keys.lock, "a crashed caller", 0.3, False).taken
    with trace.get_tracer("test").start_as_current_span("request"):
        assert slow() == "value"
    (request,) = spans("request")
    assert "cache_tools.take_over" in [e.name for e in request.events]


def test_without_opentelemetry_nothing_is_imported_or_traced():
    code = (
        "import sys; sys.modules['opentelemetry'] = None\n"
        "from cache_tools import tracing\n"
        "assert not tracing.ENABLED\n"
        "with tracing.computation('f') as traced:\n"
        "    traced.outcome = 'stored'\n"
        "tracing.event('x', 'f'); tracing.end_wait(tracing.start_wait('l'), 1)\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stdout.strip() == "ok", done.stderr
