"""The demo endpoints: each shows one scenario that breaks with per-process caches."""

import asyncio
import json
import os
import threading
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote

from asgiref.sync import async_to_sync
from django.contrib.auth import get_user_model, login
from django.core.cache import cache
from django.http import HttpResponse, HttpResponseBadRequest, JsonResponse
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from cache_tools import aupdate, cache_aside, cache_view, invalidate_tags, lock, update
from cache_tools.keys import safe_key

from . import services


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


@require_GET
def thing(request, name):
    row, fetched = services.fetch_remote_thing(name)
    time.sleep(float(request.GET.get("rest", 0)))  # the rest of the view, before its COMMIT
    return JsonResponse({"name": row.name, "result": row.result, "fetched": fetched})


@require_GET
def things_count(request, name):
    from .models import Thing

    return JsonResponse({"rows": Thing.objects.filter(name=name).count()})


@require_GET
def thing_holder(request, name):
    """The pid of the worker fetching ``name`` now (the integration tests kill it)."""
    return JsonResponse({"pid": cache.get(f"demo:holder:{name}")})


@require_GET
def things_fetches(request):
    return JsonResponse({"fetches": cache.get("demo:things-fetches", 0)})


@require_GET
def stats(request, part):
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


HERD = 32


def login_demo(request):
    """Demo only (never in a real project): sign in as a staff user to see the dashboard."""
    user, _ = get_user_model().objects.get_or_create(
        username="demo", defaults={"is_staff": True, "is_superuser": True}
    )
    login(request, user, backend="django.contrib.auth.backends.ModelBackend")
    target = request.GET.get("next", "/")
    allowed = url_has_allowed_host_and_scheme(target, {request.get_host()})
    return redirect(target if allowed else "/")


@require_GET
def slow(request, key):
    """A cold, slow endpoint on cache_aside: one computation however many callers."""
    return JsonResponse({**services.slow_report(key), "served_by": os.getpid()})


@require_GET
def slow_naive(request, key):
    """The same with what the seeds warn about: ``lru_cache`` plus ``cache.get``/``set``."""
    return JsonResponse({**services.naive_report(key), "served_by": os.getpid()})


@csrf_exempt  # a demo button; the JSON form is what the integration test posts
@require_POST
def herd(request):
    """Fire 32 concurrent requests at a cold slow endpoint (``naive=1``: the naive one) and
    report how many computations they caused and which workers served them."""
    naive = request.POST.get("naive") == "1"
    key = uuid.uuid4().hex[:12]
    url = request.build_absolute_uri(f"/demo/{'slow-naive' if naive else 'slow'}/{key}")

    def fetch(_):
        with urllib.request.urlopen(url, timeout=60) as response:
            return json.loads(response.read())

    started = time.monotonic()
    with ThreadPoolExecutor(HERD) as pool:
        replies = list(pool.map(fetch, range(HERD)))
    result = {
        "requests": HERD,
        "computations": services.computations_of(key),
        "workers": sorted({reply["served_by"] for reply in replies}),
        "computed_by": sorted({reply["computed_by"] for reply in replies}),
        "seconds": round(time.monotonic() - started, 2),
        "naive": naive,
    }
    if request.POST.get("format") == "json":
        return JsonResponse(result)
    return render(request, "demo/herd.html", result)


@cache_aside(timeout=60, key_maker=lambda name: name)
def toolbar_value(name):
    return name


def toolbar_demo(request):
    """A page for the debug toolbar's cache_tools panel: a miss, a hit, a lock wait (another
    thread holds the lock 100 ms) and a tag invalidation."""
    run = request.GET["run"]
    toolbar_value(run), toolbar_value(run)
    holding = threading.Event()

    def hold():
        with lock(f"toolbar:{run}", timeout=5):
            holding.set()
            time.sleep(0.1)

    holder = threading.Thread(target=hold)
    holder.start()
    holding.wait(5)
    with lock(f"toolbar:{run}", timeout=5):
        pass
    holder.join()
    invalidate_tags(f"toolbar:{run}")
    return HttpResponse("<html><body><h1>Toolbar demo</h1></body></html>")
