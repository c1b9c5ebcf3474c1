"""OpenTelemetry spans and events, when ``opentelemetry-api`` is installed (the ``[otel]``
extra) and the application set a tracer provider; nothing otherwise (every helper is a
constant no-op, and no hit path calls one).

* ``cache_tools.compute``: a computation and its store; attributes ``cache_tools.function``
  and ``cache_tools.outcome`` (``stored``, ``not stored``, ``kept out``, ``refused``,
  ``cache unavailable``, ``transaction``, ``error``).
* ``cache_tools.lock.wait``: the time a lock (or an entry's computation) was waited for;
  attributes ``cache_tools.lock``, ``cache_tools.fence`` (when taken) and
  ``cache_tools.outcome`` (``acquired`` or ``timed out``).
* Events on the caller's current span: ``cache_tools.stale_refresh`` (a stale entry served,
  and refreshed), ``cache_tools.take_over`` (a caller took over a computation another
  caller held the lock of and did not finish).

>>> with computation("shop.prices.price_of") as traced:
...     traced.outcome = "stored"
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

try:
    from opentelemetry import trace
except ImportError:  # the extra is not installed: every helper does nothing
    trace = None  # type: ignore[assignment]

__all__ = ["ENABLED", "computation", "end_wait", "event", "start_wait"]

#: Whether spans are made (``opentelemetry-api`` is importable).
ENABLED = trace is not None

_NAME = "cache_tools"


_tracer_of: dict[int, Any] = {}  # id(provider) -> our tracer


def _tracer() -> Any:
    """Our tracer from the provider the application set; None while none is set (the API's
    proxy would hand out no-op spans that cost a computation some 30 µs for nothing)."""
    provider = trace.get_tracer_provider()
    if isinstance(provider, (trace.ProxyTracerProvider, trace.NoOpTracerProvider)):
        return None
    tracer = _tracer_of.get(id(provider))
    if tracer is None:
        tracer = _tracer_of[id(provider)] = provider.get_tracer(_NAME)
    return tracer


class _Computation:
    """A ``cache_tools.compute`` span, current while it lasts; ``outcome`` is recorded at
    its end (``error`` when the computation raised)."""

    __slots__ = ("_manager", "_span", "outcome")

    def __init__(self, tracer: Any, function_id: str) -> None:
        self.outcome = "computed"
        self._manager = tracer.start_as_current_span(
            "cache_tools.compute", attributes={"cache_tools.function": function_id}
        )
        self._span: Any = None

    def __enter__(self) -> _Computation:
        self._span = self._manager.__enter__()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool | None:
        if error is not None and not isinstance(error, GeneratorExit):
            self.outcome = "error"
        self._span.set_attribute("cache_tools.outcome", self.outcome)
        self._manager.__exit__(kind, error, traceback)  # records an error, and re-raises it
        return None


class _Nothing:
    """What the helpers give when tracing is off."""

    __slots__ = ()
    outcome = ""

    def __enter__(self) -> _Nothing:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def __setattr__(self, name: str, value: object) -> None:
        pass  # an outcome set on nothing


_NOTHING = _Nothing()


def computation(function_id: str) -> Any:
    """A context manager around a computation and its store (set ``.outcome`` inside)."""
    tracer = _tracer() if ENABLED else None
    return _NOTHING if tracer is None else _Computation(tracer, function_id)


def start_wait(lock: str) -> Any:
    """Start a ``cache_tools.lock.wait`` span (None when tracing is off)."""
    tracer = _tracer() if ENABLED else None
    if tracer is None:
        return None
    return tracer.start_span("cache_tools.lock.wait", attributes={"cache_tools.lock": lock})


def end_wait(span: Any, fence: int | None, error: BaseException | None = None) -> None:
    """End a span of :func:`start_wait`: taken with ``fence``, timed out (None), or failed."""
    if span is None:
        return
    if error is not None:
        span.record_exception(error)
        span.set_status(trace.Status(trace.StatusCode.ERROR, str(error)))
        span.set_attribute("cache_tools.outcome", "error")
    elif fence is None:
        span.set_attribute("cache_tools.outcome", "timed out")
    else:
        span.set_attribute("cache_tools.outcome", "acquired")
        span.set_attribute("cache_tools.fence", fence)
    span.end()


def event(name: str, function_id: str) -> None:
    """Add ``name`` (``cache_tools.stale_refresh``, ``cache_tools.take_over``) to the caller's
    current span."""
    if ENABLED:
        trace.get_current_span().add_event(name, {"cache_tools.function": function_id})
