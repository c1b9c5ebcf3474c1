"""The staff dashboard and its JSON endpoint (mounted with ``cache_tools.urls``).

.. code-block:: python

    # urls.py
    path("cache-tools/", include("cache_tools.urls")),

Staff only: anonymous users are sent to the login page (the admin's when it is installed),
signed-in users who are not staff get 403. Responses are never cached.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.apps import apps
from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import ImproperlyConfigured, PermissionDenied
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import NoReverseMatch, reverse
from django.views.decorators.cache import never_cache

from . import conf, monitor, stats
from .charts import bar_chart
from .errors import BackendUnavailable

__all__ = ["dashboard", "dashboard_json"]

#: Seconds between the page's refreshes.
REFRESH = 10
#: Functions (the most called first) and locks (held first) a page shows.
PAGE = 50
#: Functions and locks the JSON endpoint returns unless asked for ``limit``.
JSON_LIMIT = 100

View = Callable[..., HttpResponse]


def _login_url() -> str:
    if apps.is_installed("django.contrib.admin"):
        try:
            return reverse("admin:login")
        except NoReverseMatch:
            pass
    return str(settings.LOGIN_URL)


def staff_only(view: View) -> View:
    """Anonymous: the login redirect; signed in without ``is_staff``: 403."""

    @wraps(view)
    def checked(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        user = getattr(request, "user", None)
        if user is None or not user.is_authenticated:
            return redirect_to_login(request.get_full_path(), _login_url())
        if not user.is_staff:
            raise PermissionDenied("the cache dashboard is for staff")
        return view(request, *args, **kwargs)

    return checked


def _per_minute(
    totals: list[tuple[int, stats.CacheInfo]],
) -> tuple[list[float | None], list[float]]:
    """Hit ratio (None where nothing was called) and computations, each minute."""
    ratios: list[float | None] = []
    computations: list[float] = []
    for _, counts in totals:
        calls = counts.hits + counts.misses + counts.stale_hits + counts.local_hits
        ratios.append((calls - counts.misses) / calls if calls else None)
        computations.append(counts.computations)
    return ratios, computations


def _number(request: HttpRequest, name: str, default: int, most: int | None = None) -> int:
    """A non-negative whole-number query parameter (``default`` when absent or malformed)."""
    try:
        value = max(0, int(request.GET.get(name, default)))
    except ValueError:
        return default
    return value if most is None else min(value, most)


def _unavailable(exc: BackendUnavailable) -> HttpResponse:
    return HttpResponse(
        f"The cache server could not be read: {exc}", status=503, content_type="text/plain"
    )


@never_cache
@staff_only
def dashboard(
    request: HttpRequest, template_name: str = "cache_tools/dashboard.html"
) -> HttpResponse:
    """The most called cached functions and views (``PAGE`` per page, ``?page=``), the
    locks (held first), and the last hour per minute; 503 naming the alias when a cache
    server cannot be read (zeros would pass for figures)."""
    if not apps.is_installed("cache_tools"):  # its templates would not be found
        raise ImproperlyConfigured(conf.NOT_INSTALLED)
    page = _number(request, "page", 1) or 1
    try:
        everything = monitor.functions()
        first = (page - 1) * PAGE
        rows = monitor.functions(series=True, limit=PAGE, offset=first) if everything else []
        locks = monitor.locks()
        tags = monitor.tags()
        totals = monitor.totals_per_minute()
    except BackendUnavailable as exc:
        return _unavailable(exc)
    ratios, computations = _per_minute(totals)
    pages = max(1, -(-len(everything) // PAGE))
    context: dict[str, Any] = {
        "page": page,
        "pages": pages,
        "previous_page": page - 1 if page > 1 else None,
        "next_page": page + 1 if page < pages else None,
        "function_count": len(everything),
        "first_shown": first + 1 if rows else 0,
        "last_shown": first + len(rows),
        "lock_count": len(locks),
        "lock_limit": PAGE,
        "lock_names_kept": stats.LOCK_NAMES_KEPT,
        "locks": locks[:PAGE],
        "tag_count": len(tags),
        "tags": tags[:PAGE],
        "functions": [
            {
                "figures": row,
                "ratio": row.hit_ratio,
                "chart": bar_chart(
                    [counts.computations for _, counts in row.series],
                    label=f"{row.function}: computations per minute",
                    width=180,
                    height=24,
                    compact=True,
                ),
            }
            for row in rows
        ],
        "ratio_chart": bar_chart(ratios, label="hit ratio per minute", top=1.0, percent=True),
        "computations_chart": bar_chart(computations, label="computations per minute"),
        "refresh": REFRESH,
        "title": "Cache tools",
        "json_url": reverse("cache_tools:json"),
        "base_template": "cache_tools/base.html",
    }
    if apps.is_installed("django.contrib.admin"):
        from django.contrib import admin

        context.update(admin.site.each_context(request))
        context["base_template"] = "admin/base_site.html"
    return render(request, template_name, context)


@never_cache
@staff_only
def dashboard_json(request: HttpRequest) -> HttpResponse:
    """The dashboard's figures as JSON (see :func:`cache_tools.monitor.snapshot`): the
    ``limit`` (default 100, at most 1 000) most called functions from ``offset`` on, and as
    many locks; 503 with ``{"error": ...}`` when a cache server cannot be read."""
    limit = _number(request, "limit", JSON_LIMIT, most=1000)
    offset = _number(request, "offset", 0)
    try:
        return JsonResponse(monitor.snapshot(series=True, limit=limit, offset=offset))
    except BackendUnavailable as exc:
        return JsonResponse({"error": str(exc)}, status=503)
