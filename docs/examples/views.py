"""cache_view: single flight, stale-while-revalidate and the HTTP rules of a shared cache."""

from django.contrib.auth.models import AnonymousUser
from django.http import HttpResponse
from django.test import RequestFactory
from django.views.decorators.vary import vary_on_headers

from cache_tools import cache_view

RENDERS = []


@cache_view(timeout=60, stale=30)
@vary_on_headers("Accept-Language")  # learned from the response: one entry per language
def report(request):
    RENDERS.append(request.headers.get("Accept-Language"))
    return HttpResponse(f"report in {request.headers.get('Accept-Language')}")


factory = RequestFactory()
french = factory.get("/docs-report/", {"year": "2026"}, HTTP_ACCEPT_LANGUAGE="fr")
german = factory.get("/docs-report/", {"year": "2026"}, HTTP_ACCEPT_LANGUAGE="de")
assert report(french).content == b"report in fr"
assert report(german).content == b"report in de"  # never the French page
assert report(french)["X-Cache"] == "hit" and RENDERS == ["fr", "de"]

report.invalidate("/docs-report/")  # every query string, host and language of the path
assert report(french)["X-Cache"] == "miss"


# A page for signed-in users: one entry per user (vary_on_user), never one user's page for
# another. Anonymous visitors share one entry.
@cache_view(timeout=300, vary_on_user=True)
def dashboard(request):
    name = request.user.get_username() if request.user.is_authenticated else "guest"
    return HttpResponse(f"hello {name}")


class Member:  # stands in for a User in this example
    is_authenticated = True

    def __init__(self, pk, name):
        self.pk, self.name = pk, name

    def get_username(self):
        return self.name


def visit(user):
    request = factory.get("/docs-dashboard/")
    request.user = user
    return dashboard(request).content


assert visit(Member(1, "alice")) == b"hello alice"
assert visit(Member(2, "bob")) == b"hello bob"
assert visit(AnonymousUser()) == b"hello guest"
assert dashboard.cache_info().misses == 3
