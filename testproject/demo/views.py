"""The demo endpoints: each shows one scenario that breaks with per-process caches."""

import asyncio
import json
import os
import time
from urllib.parse import quote

from asgiref.sync import async_to_sync
from django.core.cache import cache
from django.http import HttpResponse, HttpResponseBadRequest, JsonResponse
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from cache_tools import aupdate, cache_view, update
from cache_tools.aside import cached_functions
from cache_tools.backends import get_backend
from cache_tools.keys import safe_key

from . import services

SEEN_LOCKS = "demo:seen-locks"


def _user_key(key: str) -> str:
    # Request data never reaches a key unescaped: quote it, then hash if long or unsafe.
    return safe_key(f"demo:kv:{quote(key, safe='')}")


@csrf_exempt
@require_POST
def cache_set(request):
    try:
        data = json.loads(request.body)
        key, value = data["key"], data["value"]
    except (ValueError, KeyError, TypeError):
        return HttpResponseBadRequest('expected JSON {"key": ..., "value": ...}')
    if not isinstance(key, str) or not key:
        return HttpResponseBadRequest("key must be a non-empty string")
    cache.set(_user_key(key), value, 3600)
    return JsonResponse({"key": key, "value": value, "stored": True})


@require_GET
def cache_get(request, key):
    sentinel = object()
    value = cache.get(_user_key(key), sentinel)
    found = value is not sentinel
    return JsonResponse({"key": key, "value": value if found else None, "found": found})


@require_GET
def info(request):
    return JsonResponse(services.compute.cache_info()._asdict())


@require_GET
def compute(request, n):
    return JsonResponse(services.compute(n))


@require_GET
def compute_local(request, n):
    return JsonResponse(services.compute_local(n))


@require_GET
def raw_get(request, n):
    """The baseline of the load benchmark: one raw cache.get."""
    return JsonResponse({"value": cache.get(f"demo:raw:{n}")})


def _seen(lock_name: str) -> None:
    """Remember lock names used in the last ten minutes, for the dashboard."""

    def add(seen):
        now = time.time()
        recent = {name: at for name, at in (seen or {}).items() if at > now - 600}
        return {**recent, lock_name: now}

    update(SEEN_LOCKS, add, timeout=600)


@require_GET
def thing(request, name):
    _seen(f"thing:{name}")
    row, fetched = services.fetch_remote_thing(name)
    return JsonResponse({"name": row.name, "result": row.result, "fetched": fetched})


@require_GET
def thing_holder(request, name):
    """The pid of the worker fetching ``name`` now (the integration tests kill it)."""
    return JsonResponse({"pid": cache.get(f"demo:holder:{name}")})


@require_GET
def things_fetches(request):
    return JsonResponse({"fetches": cache.get("demo:things-fetches", 0)})


@require_GET
def stats(request, part):
    _seen("api_stats_calculations")
    return JsonResponse(services.api_stats_calculations(request, part))


@require_GET
@cache_view(timeout=30, stale=60)
def report(request):
    time.sleep(0.2)  # an expensive report
    computations = update("demo:report-computations", lambda n: (n or 0) + 1, timeout=None)
    return HttpResponse(
        f"<p>report computed {computations} time(s), by worker {os.getpid()}</p>",
        content_type="text/html",
    )


@require_GET
def report_computations(request):
    return JsonResponse({"computations": cache.get("demo:report-computations", 0)})


@cache_view(timeout=30, stale=60)
async def areport(request):
    """The report as an async view (served by an ASGI server): one computation per cold page
    however many requests and workers."""
    await asyncio.sleep(0.2)  # an expensive report, awaited
    computations = await aupdate("demo:areport-computations", lambda n: (n or 0) + 1, timeout=None)
    return HttpResponse(
        f"<p>async report computed {computations} time(s), by worker {os.getpid()}</p>",
        content_type="text/html",
    )


@require_GET
def areport_computations(request):
    return JsonResponse({"computations": cache.get("demo:areport-computations", 0)})


def shared(request, n):
    """A sync view (uWSGI) on the same key as ``ashared`` (an ASGI server)."""
    return JsonResponse(async_to_sync(services.shared_report)(n))


async def ashared(request, n):
    return JsonResponse(await services.shared_report(n))


@require_GET
def shared_computations(request, n):
    return JsonResponse({"computations": cache.get(f"demo:shared-computations:{n}", 0)})


def _lock_rows():
    backend = get_backend()
    rows = []
    for name in sorted(cache.get(SEEN_LOCKS) or {}):
        keys = backend.lock_keys(safe_key(name))
        held = backend.exists(keys.lock)
        waiters = backend.waiters(keys)
        rows.append({"name": name, "held": held, "waiters": "?" if waiters is None else waiters})
    return rows


def dashboard(request):
    functions = []
    for cached in cached_functions():
        info = cached.cache_info()
        calls = info.hits + info.misses + info.stale_hits
        functions.append(
            {
                "name": cached.flight.function_id,
                "info": info,
                "ratio": (info.hits + info.stale_hits) / calls if calls else 0.0,
            }
        )
    peak = max([1] + [max(f["info"][:4]) for f in functions])
    for f in functions:
        f["bars"] = [
            {"label": label, "value": value, "width": 200 * value / peak, "y": 18 * i}
            for i, (label, value) in enumerate(
                zip(("hits", "misses", "stale", "computations"), f["info"][:4], strict=True)
            )
        ]
    context = {"functions": functions, "locks": _lock_rows(), "pid": os.getpid()}
    return render(request, "demo/dashboard.html", context)
