"""cache_view accounts for the request state middleware and templates read after the view has
returned: flash messages (cookie, session and fallback storages), the session beyond
authentication under ``vary_on_user``, and cookies that no ``Vary`` names. Every request goes
through ``startproject``'s middleware (``testproject/settings.py``) to the shop app."""

import pytest
from django.conf import settings
from django.contrib.sessions.backends.signed_cookies import SessionStore
from django.http import HttpResponse
from django.test import Client, RequestFactory, override_settings
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from cache_tools import cache_view
from cache_tools.keys import MAX_LENGTH, normalise

STORAGES = {
    "cookie": "django.contrib.messages.storage.cookie.CookieStorage",
    "session": "django.contrib.messages.storage.session.SessionStorage",
    "fallback": "django.contrib.messages.storage.fallback.FallbackStorage",
}
SESSIONS = {
    "signed-cookies": "django.contrib.sessions.backends.signed_cookies",
    "db": "django.contrib.sessions.backends.db",
}

pytestmark = pytest.mark.django_db
factory = RequestFactory()
ABSENT = object()


@pytest.fixture(params=list(SESSIONS))
def sessions(request):
    with override_settings(SESSION_ENGINE=SESSIONS[request.param]):
        yield request.param


@pytest.fixture(params=list(STORAGES))
def storage(request, sessions):
    with override_settings(MESSAGE_STORAGE=STORAGES[request.param]):
        yield request.param


def test_the_shop_runs_startprojects_middleware():
    assert settings.MIDDLEWARE[1:] == settings.STARTPROJECT_MIDDLEWARE


def page(client, path, **extra):
    response = client.get(path, **extra)
    assert response.status_code == 200, response.status_code
    return response.content.decode(), response.get("X-Cache")


def order(client, run, name):
    """Alice's checkout: the order view thanks her by name on the next page (a redirect)."""
    response = client.post(f"/shop/{run}/order", {"name": name})
    assert response.status_code == 302
    return page(client, response["Location"])


@pytest.mark.parametrize("warm", [True, False], ids=["warm-page", "cold-page"])
def test_flash_messages_are_never_served_to_another_visitor(unique, storage, warm):
    catalogue = f"/shop/{unique}/"
    if warm:
        assert page(Client(), catalogue)[1] == "miss"
        assert page(Client(), catalogue)[1] == "hit"
    alice = Client()
    thanks, state = order(alice, unique, "Alice Smith")
    assert "Thanks Alice Smith" in thanks and "ORD-" in thanks  # she sees her own message
    assert state == "bypass"
    others = [page(Client(), catalogue) for _ in range(4)]
    assert not [text for text, _ in others if "Alice" in text]
    assert {state for _, state in others} <= {"hit", "miss"}  # the page is still cached
    assert others[-1][1] == "hit"
    assert "Alice" not in page(alice, catalogue)[0]  # shown once, then gone
    assert "Thanks Bob" in order(Client(), unique, "Bob")[0]


def test_a_message_added_and_shown_by_the_cached_view_itself_is_not_stored(unique, storage):
    with_message = Client()
    with_message.cookies.load({"theme": "dark"})  # any cookie: the key is the same
    assert order(with_message, unique, "Alice Smith")[1] == "bypass"
    text, state = page(Client(), f"/shop/{unique}/")
    assert "Alice" not in text and state == "miss"


def test_vary_on_user_keeps_anonymous_session_carts_apart(unique, sessions):
    cart = f"/shop/{unique}/cart"
    carol, dave = Client(), Client()
    carol.post(f"/shop/{unique}/cart/add", {"item": "engagement ring for Carol"})
    assert "engagement ring for Carol" in page(carol, cart)[0]
    assert "engagement ring" not in page(dave, cart)[0]
    assert "engagement ring" not in page(Client(), cart)[0]
    dave.post(f"/shop/{unique}/cart/add", {"item": "socks"})
    text = page(dave, cart)[0]
    assert "socks" in text and "engagement ring" not in text
    text, state = page(carol, cart)
    assert "engagement ring for Carol" in text and "socks" not in text and state == "hit"
    carol.post(f"/shop/{unique}/cart/add", {"item": "flowers"})  # the same session, changed
    text = page(carol, cart)[0]
    assert "engagement ring for Carol" in text and "flowers" in text
    staff = Client()
    staff.get(f"/shop/{unique}/sign-in", {"user": f"staff-{unique}", "staff": "1"})
    text = page(staff, cart)[0]
    assert f"Signed in as staff-{unique}" in text and "engagement ring" not in text


def test_vary_on_user_still_shares_a_page_that_read_the_session_for_authentication(
    unique, sessions
):
    greeting = f"/shop/{unique}/greeting"
    carol = Client()
    carol.post(f"/shop/{unique}/cart/add", {"item": "ring"})  # a session with data of its own
    assert page(carol, greeting)[1] == "miss"
    text, state = page(Client(), greeting)  # shared by every anonymous visitor
    assert "Hello, guest" in text and state == "hit"
    alice = Client()
    alice.get(f"/shop/{unique}/sign-in", {"user": f"alice-{unique}"})
    text, state = page(alice, greeting)
    assert f"Signed in as alice-{unique}" in text and state == "miss"
    assert page(alice, greeting)[1] == "hit"


def test_a_cookie_read_by_the_view_is_part_of_the_key(unique):
    preferences = f"/shop/{unique}/preferences"
    dark = Client()
    dark.cookies.load({"theme": "dark"})
    assert "Theme: dark" in page(dark, preferences)[0]
    assert "Theme: light" in page(Client(), preferences)[0]
    text, state = page(dark, preferences)
    assert "Theme: dark" in text and state == "hit"
    assert page(Client(), preferences)[1] == "hit"


def test_responses_not_stored_say_so(unique):
    assert page(Client(), f"/shop/{unique}/checkout")[1] is None  # not a cached view
    cart = f"/shop/{unique}/cart"
    assert Client().post(cart)["X-Cache"] == "bypass"  # a method the view does not cache


def test_a_session_read_by_middleware_before_the_view_varies_on_the_whole_cookie(unique):
    @cache_view(timeout=60)
    def page(request):
        return HttpResponse(f"tenant {request.tenant}")

    def get(tenant):
        request = factory.get(f"/tenant/{unique}", HTTP_COOKIE=f"sessionid={tenant}")
        request.session = SessionStore()
        request.session["tenant"] = tenant
        request.tenant = request.session["tenant"]  # what a tenant middleware does
        response = page(request)
        return response.content.decode(), response["Vary"]

    assert get("acme") == ("tenant acme", "Cookie")
    assert get("globex") == ("tenant globex", "Cookie")
    assert get("acme") == ("tenant acme", "Cookie")


def test_a_session_value_that_cannot_be_keyed_is_not_stored(unique):
    calls = []

    @cache_view(timeout=60)
    def page(request):
        calls.append(1)
        return HttpResponse(f"{type(request.session.get('basket')).__name__}")

    def get():
        request = factory.get(f"/odd/{unique}")
        request.session = SessionStore()
        request.session._session_cache = {"basket": object()}  # a custom serializer's value
        request.session.accessed = False
        response = page(request)
        return response.content.decode(), response["X-Cache"]

    assert get() == ("object", "bypass")
    assert get() == ("object", "bypass")
    assert len(calls) == 2


hostile = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=40)
session_values = st.one_of(
    st.none(), st.booleans(), st.integers(), hostile, st.lists(hostile, max_size=3)
)


@given(
    name=hostile.filter(bool),
    first=st.one_of(st.none(), hostile),
    second=st.one_of(st.none(), hostile),
    stored=st.one_of(st.just(ABSENT), session_values),
    other=st.one_of(st.just(ABSENT), session_values),
)
@hypothesis_settings(max_examples=200, deadline=None)
def test_keys_of_cookies_and_session_values_never_collide(name, first, second, stored, other):
    view = cache_view(timeout=60)(lambda request: HttpResponse())
    varies = (f"cookie:{name}", f"session:{name}")

    def key(cookie, value):
        request = factory.get("/hostile")
        if cookie is not None:
            request.COOKIES[name] = cookie
        request.session = SessionStore()
        if value is not ABSENT:
            request.session[name] = value
        return view._key(request, (), {}, varies)

    base = key(first, stored)
    assert len(base) <= MAX_LENGTH and base.isascii() and not set(base) & set("{} \n")
    assert (key(second, stored) == base) == (second == first)
    kept = (stored is other) if ABSENT in (stored, other) else normalise(other) == normalise(stored)
    assert (key(first, other) == base) == kept


def test_a_waiter_of_the_same_process_never_takes_a_visitors_own_page(unique, monkeypatch):
    """Alice's render of a cold page shows her flash message, so it is not stored; Bob,
    waiting in the same process for that render, must not be handed her response (before:
    he got it as a hit, and the view raised on it, a 500 in the shop under gunicorn)."""
    import threading

    from testproject.shop import views
    from tests.test_locks import blocked_clients, wait_until_blocked

    alice = Client()
    alice.post(f"/shop/{unique}/order", {"name": "Alice Smith"})
    rendering, go_on = threading.Event(), threading.Event()
    renders = views._rendering

    def rendering_alice_waits():
        if threading.current_thread().name == "alice":
            rendering.set()
            assert go_on.wait(10)
        return renders()

    monkeypatch.setattr(views, "_rendering", rendering_alice_waits)
    pages = {}

    def visit(name, client):
        pages[name] = client.get(f"/shop/{unique}/")

    alices = threading.Thread(target=visit, args=("alice", alice), name="alice")
    alices.start()
    assert rendering.wait(10)
    blocked = blocked_clients()
    bobs = threading.Thread(target=visit, args=("bob", Client()), name="bob")
    bobs.start()
    wait_until_blocked(blocked + 1)  # Bob waits for Alice's render
    go_on.set()
    alices.join(10)
    bobs.join(10)
    assert "Thanks Alice Smith" in pages["alice"].content.decode()
    assert pages["bob"].status_code == 200
    assert "Alice" not in pages["bob"].content.decode()


def get(view, path, **headers):
    response = view(factory.get(path, **headers))
    return response.content.decode(), response["X-Cache"], response.get("Vary")


@pytest.mark.parametrize(
    "reads",
    [
        lambda request: request.headers.get("Accept", "html"),
        lambda request: request.headers["Accept"] if "Accept" in request.headers else "html",  # noqa: SIM401 (`in`, then `[]`: both are reads)
        lambda request: request.META.get("HTTP_ACCEPT", "html"),
        lambda request: request.META["HTTP_ACCEPT"] if "HTTP_ACCEPT" in request.META else "html",  # noqa: SIM401
    ],
    ids=["headers.get", "headers[]", "META.get", "META[]"],
)
def test_a_header_read_by_the_view_is_part_of_the_key(unique, reads):
    """Before: the page rendered for the first Accept header was served to every other one."""
    view = cache_view(timeout=60)(lambda request: HttpResponse(f"as {reads(request)}"))
    path = f"/formats/{unique}"
    assert get(view, path, HTTP_ACCEPT="json") == ("as json", "miss", "Accept")
    assert get(view, path, HTTP_ACCEPT="xml") == ("as xml", "miss", "Accept")
    assert get(view, path) == ("as html", "miss", "Accept")  # absent differs from any value
    assert get(view, path, HTTP_ACCEPT="") == ("as ", "miss", "Accept")  # ... and from empty
    assert get(view, path, HTTP_ACCEPT="json") == ("as json", "hit", "Accept")
    assert get(view, path, HTTP_ACCEPT="xml") == ("as xml", "hit", "Accept")
    assert get(view, path) == ("as html", "hit", "Accept")


def test_a_header_named_by_vary_on_headers_or_vary_is_keyed_once(unique):
    @cache_view(timeout=60, vary_on_headers=["X-Tenant"])
    def tenant(request):
        return HttpResponse(f"{request.headers.get('X-Tenant')} {request.headers.get('X-Shard')}")

    path = f"/tenants/{unique}"
    assert get(tenant, path, HTTP_X_TENANT="a") == ("a None", "miss", "X-Shard")
    assert get(tenant, path, HTTP_X_TENANT="b", HTTP_X_SHARD="1") == ("b 1", "miss", "X-Shard")
    assert get(tenant, path, HTTP_X_TENANT="a") == ("a None", "hit", "X-Shard")
    assert get(tenant, path, HTTP_X_TENANT="b", HTTP_X_SHARD="1") == ("b 1", "hit", "X-Shard")


def test_a_view_that_reads_every_header_is_not_stored(unique):
    view = cache_view(timeout=60)(lambda request: HttpResponse(repr(sorted(request.headers))))
    assert get(view, f"/echo/{unique}", HTTP_X_A="1")[1] == "bypass"
    assert get(view, f"/echo/{unique}", HTTP_X_B="2")[1] == "bypass"


def test_the_host_scheme_and_conditional_headers_need_no_vary(unique):
    """What the key already holds (host, scheme) and conditional headers (a stored 200 answers
    any conditional request) keep the page shared."""
    from django.views.decorators.http import etag

    @cache_view(timeout=60)
    @etag(lambda request: '"v1"')
    def view(request):
        return HttpResponse(f"{request.build_absolute_uri()} {request.is_secure()}")

    path = f"/absolute/{unique}"
    text, state, vary = get(view, path, HTTP_USER_AGENT="a")
    assert (text, state, vary) == (f"http://testserver{path} False", "miss", None)
    assert get(view, path, HTTP_USER_AGENT="b", HTTP_IF_NONE_MATCH='"v0"')[1:] == ("hit", None)


def test_a_page_through_startprojects_middleware_reads_no_header(unique):
    """The shop's pages (messages, CSRF, auth context processors) stay shared by visitors
    whose headers differ."""
    catalogue = f"/shop/{unique}/"
    assert page(Client(HTTP_USER_AGENT="a", HTTP_ACCEPT="text/html"), catalogue)[1] == "miss"
    assert page(Client(HTTP_USER_AGENT="b", HTTP_ACCEPT_LANGUAGE="de"), catalogue)[1] == "hit"


def test_writes_to_meta_while_watched_reach_the_request(unique):
    """``get_token()`` writes ``CSRF_COOKIE`` to ``request.META`` while the page renders; the
    CSRF middleware reads it from the request's own ``META`` afterwards."""
    from django.middleware.csrf import get_token

    view = cache_view(timeout=60)(lambda request: HttpResponse(get_token(request)))
    request = factory.get(f"/token/{unique}")
    response = view(request)
    assert request.META["CSRF_COOKIE"] and request.META["CSRF_COOKIE_NEEDS_UPDATE"]
    assert response["X-Cache"] == "bypass"  # it created the visitor's CSRF cookie


@pytest.mark.parametrize("key", ["REMOTE_ADDR", "REMOTE_USER"])
def test_the_clients_address_or_web_server_user_read_by_the_view_is_part_of_the_key(unique, key):
    """Before: the page for the first client's address (a country picked by IP) or the user
    the web server authenticated was served to every other client."""
    view = cache_view(timeout=60)(lambda request: HttpResponse(f"for {request.META.get(key)}"))
    path = f"/client/{unique}"
    assert get(view, path, **{key: "10.0.0.1"}) == ("for 10.0.0.1", "miss", None)
    assert get(view, path, **{key: "10.0.0.2"}) == ("for 10.0.0.2", "miss", None)
    assert get(view, path, **{key: "10.0.0.1"}) == ("for 10.0.0.1", "hit", None)
    assert get(view, path, **{key: "10.0.0.2"}) == ("for 10.0.0.2", "hit", None)


def test_a_cached_view_inside_another_tells_it_what_it_read(unique):
    """A cached page that renders another cached view with its request: what the inner one
    reads keys both (before: copying the watched request read all of it, and the outer page
    was never stored)."""
    inner = cache_view(timeout=60)(lambda request: HttpResponse(request.headers.get("Accept")))

    @cache_view(timeout=60)
    def outer(request):
        return HttpResponse(b"page of " + inner(request).content)

    path = f"/nested/{unique}"
    assert get(outer, path, HTTP_ACCEPT="json") == ("page of json", "miss", "Accept")
    assert get(outer, path, HTTP_ACCEPT="xml") == ("page of xml", "miss", "Accept")
    assert get(outer, path, HTTP_ACCEPT="json") == ("page of json", "hit", "Accept")
    assert get(outer, path, HTTP_ACCEPT="xml") == ("page of xml", "hit", "Accept")


def test_a_read_of_a_name_no_header_can_have_is_not_keyed(unique):
    """``a:b`` is no header field name (no request carries it): before, the ``:`` made it read
    as the session key ``b`` in the key, and ``Vary`` named it."""
    view = cache_view(timeout=60)(lambda request: HttpResponse(str(request.headers.get("a:b"))))
    assert get(view, f"/odd-name/{unique}") == ("None", "miss", None)
    assert get(view, f"/odd-name/{unique}") == ("None", "hit", None)
