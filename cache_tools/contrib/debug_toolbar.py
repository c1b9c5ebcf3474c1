"""A django-debug-toolbar panel (the ``[debug-toolbar]`` extra): what each request did with
the cache: every cached call (function, view or fragment; key; hit, local, stale, miss or
uncached; time), every wait (for a lock, with its fence, or for another caller's computation),
every invalidation and tag.

.. code-block:: python

    DEBUG_TOOLBAR_PANELS = [
        *debug_toolbar.settings.PANELS_DEFAULTS,
        "cache_tools.contrib.debug_toolbar.CacheToolsPanel",
    ]
"""

from __future__ import annotations

from typing import Any

from debug_toolbar.panels import Panel
from django.http import HttpRequest, HttpResponse

from .. import recording

__all__ = ["CacheToolsPanel"]


class CacheToolsPanel(Panel):
    """The cache_tools panel: nav subtitle "N hits, M misses, W ms waiting"."""

    title = "cache_tools"
    template = "cache_tools/debug_toolbar.html"

    def process_request(self, request: HttpRequest) -> HttpResponse:
        with recording.recording() as seen:
            response = super().process_request(request)
        self._seen = seen
        return response  # type: ignore[no-any-return]

    def generate_stats(self, request: HttpRequest, response: HttpResponse) -> None:
        seen: recording.Recording = getattr(self, "_seen", recording.Recording())
        calls = [{**call._asdict(), "ms": round(call.seconds * 1000, 2)} for call in seen.calls]
        waits = [{**wait._asdict(), "ms": round(wait.seconds * 1000, 2)} for wait in seen.waits]
        states = [call.state for call in seen.calls]
        self.record_stats(
            {
                "calls": calls,
                "waits": waits,
                "invalidations": [item._asdict() for item in seen.invalidations],
                "hits": sum(state in ("hit", "local", "stale") for state in states),
                "misses": sum(state in ("miss", "uncached") for state in states),
                "waiting_ms": round(sum(wait.seconds for wait in seen.waits) * 1000, 1),
            }
        )

    @property
    def nav_subtitle(self) -> str:
        stats: dict[str, Any] = self.get_stats()
        return (
            f"{stats.get('hits', 0)} hits, {stats.get('misses', 0)} misses, "
            f"{stats.get('waiting_ms', 0):.0f} ms waiting"
        )
