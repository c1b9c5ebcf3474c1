"""cache_view keys a page on the request headers it reads, as if its Vary named them."""

from django.http import HttpResponse
from django.test import RequestFactory

from cache_tools import cache_view


@cache_view(timeout=60)
def price_list(request):
    # No Vary here: cache_view sees the read, keys the page on Accept and adds Vary: Accept.
    if "application/json" in request.headers.get("Accept", ""):
        return HttpResponse('{"tea": 4}', content_type="application/json")
    return HttpResponse("tea: 4 EUR")


factory = RequestFactory()
as_json = price_list(factory.get("/docs-prices/", HTTP_ACCEPT="application/json"))
as_text = price_list(factory.get("/docs-prices/", HTTP_ACCEPT="text/html"))
assert as_json.content == b'{"tea": 4}' and as_text.content == b"tea: 4 EUR"  # never swapped
assert as_text["Vary"] == "Accept"
again = price_list(factory.get("/docs-prices/", HTTP_ACCEPT="application/json"))
assert again["X-Cache"] == "hit" and again.content == b'{"tea": 4}'
