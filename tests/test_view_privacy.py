"""cache_view never serves a response to a request it was not valid for (RFC 9111 as a shared
cache, and the Vary headers Django's middleware adds after a view returns)."""

import itertools
import threading
import time

import pytest
from django.contrib.sessions.backends.signed_cookies import SessionStore
from django.http import HttpResponse, StreamingHttpResponse
from django.middleware.csrf import get_token
from django.test import RequestFactory
from django.utils import translation
from django.views.decorators.vary import vary_on_cookie, vary_on_headers
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from cache_tools import cache_view
from cache_tools.keys import MAX_LENGTH

factory = RequestFactory()


def body(response):
    return response.content.decode()


def test_vary_on_cookie_keeps_users_apart(unique):
    @cache_view(timeout=60)
    @vary_on_cookie
    def profile(request):
        return HttpResponse(f"page of {request.COOKIES.get('sessionid')}")

    def get(session):
        request = factory.get(f"/me/{unique}")
        request.COOKIES["sessionid"] = session
        request.META["HTTP_COOKIE"] = f"sessionid={session}"
        return body(profile(request))

    assert get("alice") == "page of alice"
    assert get("bob") == "page of bob"  # not Alice's page
    assert get("alice") == "page of alice"


def test_vary_on_accept_language_keeps_languages_apart(unique):
    calls = itertools.count(1)

    @cache_view(timeout=60)
    @vary_on_headers("Accept-Language")
    def page(request):
        return HttpResponse(f"{request.headers.get('Accept-Language')} {next(calls)}")

    def get(language):
        return body(page(factory.get(f"/lang/{unique}", HTTP_ACCEPT_LANGUAGE=language)))

    assert get("fr") == "fr 1"
    assert get("de") == "de 2"
    assert get("fr") == "fr 1" and get("de") == "de 2"


def test_active_language_is_part_of_the_key(unique):
    @cache_view(timeout=60)
    def page(request):
        return HttpResponse(translation.get_language())

    with translation.override("fr"):
        assert body(page(factory.get(f"/i18n/{unique}"))) == "fr"
    with translation.override("de"):
        assert body(page(factory.get(f"/i18n/{unique}"))) == "de"


def test_scheme_is_part_of_the_key(unique):
    @cache_view(timeout=60)
    def page(request):
        return HttpResponse(request.build_absolute_uri())

    plain = body(page(factory.get(f"/s/{unique}")))
    secure = body(page(factory.get(f"/s/{unique}", secure=True)))
    assert plain.startswith("http://") and secure.startswith("https://")


def test_session_read_by_the_view_varies_on_cookie(unique):
    """SessionMiddleware adds ``Vary: Cookie`` after the view returns: the cache must too."""

    @cache_view(timeout=60)
    def dashboard(request):
        return HttpResponse(f"hello {request.session.get('name')}")

    def get(name):
        session = SessionStore()
        session["name"] = name
        session.save()
        request = factory.get(f"/dash/{unique}", HTTP_COOKIE=f"sessionid={session.session_key}")
        request.session = SessionStore(session.session_key)
        response = dashboard(request)
        return body(response), response["Vary"]

    assert get("alice") == ("hello alice", "Cookie")
    assert get("bob")[0] == "hello bob"


def test_a_page_that_creates_a_csrf_cookie_is_not_shared(unique):
    tokens = []

    @cache_view(timeout=60)
    def form(request):
        token = get_token(request)
        tokens.append(token)
        return HttpResponse(f"token {token}")

    first = body(form(factory.get(f"/f/{unique}")))
    second = body(form(factory.get(f"/f/{unique}")))
    assert first != second and len(tokens) == 2  # each visitor gets a token of their own


@pytest.mark.parametrize(
    "vary",
    ["*", "Accept, *", "accept-encoding,*"],
)
def test_vary_star_is_never_cached(unique, vary):
    calls = itertools.count(1)

    @cache_view(timeout=60)
    def page(request):
        response = HttpResponse(f"body {next(calls)}")
        response["Vary"] = vary
        return response

    assert [body(page(factory.get(f"/star/{unique}"))) for _ in range(2)] == ["body 1", "body 2"]


def _with_header(name, value):
    def apply(response):
        response[name] = value

    return apply


def _set_cookie(response):
    response.set_cookie("session", "x")


@pytest.mark.parametrize(
    "change",
    [
        _set_cookie,
        _with_header("Set-Cookie", "sessionid=alice; Path=/"),
        _with_header("Cache-Control", "private, max-age=60"),
        _with_header("Cache-Control", "no-store"),
        _with_header("Cache-Control", "no-cache"),
        _with_header("Cache-Control", "max-age=0"),
        _with_header("Cache-Control", "public, s-maxage=0, max-age=60"),
        _with_header("Expires", "Thu, 01 Jan 1970 00:00:00 GMT"),
    ],
    ids=[
        "set_cookie",
        "raw-set-cookie",
        "private",
        "no-store",
        "no-cache",
        "max-age=0",
        "s-maxage=0",
        "expired",
    ],
)
def test_responses_a_shared_cache_must_not_store(unique, change):
    calls = itertools.count(1)

    @cache_view(timeout=60)
    def page(request):
        response = HttpResponse(f"body {next(calls)}")
        change(response)
        return response

    responses = [page(factory.get(f"/n/{unique}")) for _ in range(3)]
    assert [body(r) for r in responses] == ["body 1", "body 2", "body 3"]
    assert [r["X-Cache"] for r in responses] == ["bypass"] * 3  # computed, not stored


def test_streaming_and_errors_are_not_stored(unique):
    calls = itertools.count(1)

    @cache_view(timeout=60)
    def page(request, kind):
        if kind == "stream":
            return StreamingHttpResponse(iter([f"chunk {next(calls)}"]))
        return HttpResponse(f"error {next(calls)}", status=503)

    assert b"".join(page(factory.get(f"/st/{unique}"), "stream").streaming_content) == b"chunk 1"
    assert b"".join(page(factory.get(f"/st/{unique}"), "stream").streaming_content) == b"chunk 2"
    assert body(page(factory.get(f"/e/{unique}"), "error")) == "error 3"
    assert body(page(factory.get(f"/e/{unique}"), "error")) == "error 4"


def test_requests_with_authorization_bypass_the_cache(unique):
    calls = itertools.count(1)

    @cache_view(timeout=60)
    def api(request):
        return HttpResponse(f"for {request.headers.get('Authorization')} {next(calls)}")

    assert (
        body(api(factory.get(f"/api/{unique}", HTTP_AUTHORIZATION="Bearer a"))) == "for Bearer a 1"
    )
    assert (
        body(api(factory.get(f"/api/{unique}", HTTP_AUTHORIZATION="Bearer b"))) == "for Bearer b 2"
    )
    assert body(api(factory.get(f"/api/{unique}"))) == "for None 3"
    assert body(api(factory.get(f"/api/{unique}"))) == "for None 3"


def test_response_max_age_bounds_the_entry(unique, redis_client):
    @cache_view(timeout=3600)
    def page(request):
        response = HttpResponse("short-lived")
        response["Cache-Control"] = "max-age=2"
        return response

    page(factory.get(f"/ma/{unique}"))
    assert page(factory.get(f"/ma/{unique}"))["X-Cache"] == "hit"
    assert 0 < redis_client.pttl(page.cache_key(factory.get(f"/ma/{unique}"))) <= 2000


def test_async_views_follow_the_same_rules(unique):
    calls = itertools.count(1)

    @cache_view(timeout=60)
    @vary_on_headers("Accept-Language")
    async def page(request):
        return HttpResponse(f"{request.headers.get('Accept-Language')} {next(calls)}")

    async def get(language):
        return body(await page(factory.get(f"/async/{unique}", HTTP_ACCEPT_LANGUAGE=language)))

    async def scenario():
        return [await get("fr"), await get("de"), await get("fr")]

    from asgiref.sync import async_to_sync, iscoroutinefunction

    assert iscoroutinefunction(page)  # Django awaits it on its async path
    assert async_to_sync(scenario)() == ["fr 1", "de 2", "fr 1"]


def test_invalidate_by_request_or_path_and_cache_info(unique):
    calls = itertools.count(1)

    @cache_view(timeout=60)
    def page(request):
        return HttpResponse(f"body {next(calls)}")

    page.cache_clear_stats()
    path = f"/inv/{unique}"
    assert body(page(factory.get(path, {"q": "1"}))) == "body 1"
    assert body(page(factory.get(path))) == "body 2"
    assert body(page(factory.get(path, {"q": "1"}))) == "body 1"
    assert page.invalidate(path) is True  # every query string of the path
    assert body(page(factory.get(path, {"q": "1"}))) == "body 3"
    assert body(page(factory.get(path))) == "body 4"
    assert page.invalidate(factory.get(path)) is True
    assert body(page(factory.get(path))) == "body 5"
    assert page.invalidate(f"https://example.com{path}?x=1") is True
    assert body(page(factory.get(path))) == "body 6"
    assert page.invalidate(f"/never/{unique}") is False
    info = page.cache_info()
    assert (info.hits, info.misses, info.computations) == (1, 6, 6)
    with pytest.raises(TypeError, match="a request or a path"):
        page.invalidate(None)


def test_cold_varying_page_is_computed_once_by_concurrent_requests(unique):
    computations = []
    barrier = threading.Barrier(8)

    @cache_view(timeout=60)
    @vary_on_headers("Accept-Language")
    def slow(request):
        computations.append(1)
        time.sleep(0.2)
        return HttpResponse("fr page")

    results = []

    def request():
        barrier.wait()
        results.append(body(slow(factory.get(f"/herd/{unique}", HTTP_ACCEPT_LANGUAGE="fr"))))

    threads = [threading.Thread(target=request) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == ["fr page"] * 8
    assert len(computations) == 1


hostile = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=0, max_size=60
)


@given(path=hostile, query=hostile, header=hostile, other=hostile)
@hypothesis_settings(max_examples=200, deadline=None)
def test_request_keys_are_safe_and_never_collide(path, query, header, other):
    view = cache_view(timeout=60, vary_on_headers=["X-Tenant"])(lambda request: HttpResponse())

    def key(path, query, header):
        request = factory.get("/" + path.lstrip("/"), {"q": query}, HTTP_X_TENANT=header)
        return view._key(request, (), {}, ("x-tenant",))

    first = key(path, query, header)
    assert len(first) <= MAX_LENGTH and first.isascii() and not set(first) & set("{} \n")
    if other != header:
        assert key(path, query, other) != first
    if other != query:
        assert key(path, other, header) != first
