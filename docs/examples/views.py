"""cache_view: single flight and stale-while-revalidate for a view."""

from django.http import HttpResponse
from django.test import RequestFactory

from cache_tools import cache_view

RENDERS = []


@cache_view(timeout=60, stale=30, vary_on_headers=["Accept-Language"])
def report(request):
    RENDERS.append(request.path)
    return HttpResponse("expensive report")


request = RequestFactory().get("/docs-report/", {"year": "2026"})
first, second = report(request), report(request)
assert (first["X-Cache"], second["X-Cache"]) == ("miss", "hit")
assert second.content == b"expensive report" and len(RENDERS) == 1
