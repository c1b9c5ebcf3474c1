"""The shop of ``testproject/shop`` as a new user deploys it: ``startproject``'s middleware,
database sessions, flash messages in the base template, gunicorn with 4 workers. Visitors
(cookieless ones, anonymous ones with a session cart, a signed-in staff member) interleave on
every worker: no visitor ever receives a page built for another's messages, session or user."""

import http.cookiejar
import re
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.conf import settings

from testproject.uwsgi_site import start_gunicorn_site, stop_site

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    prefix = f"{settings.TEST_PREFIX}-shop"
    tmp = tmp_path_factory.mktemp("shop")
    site = start_gunicorn_site(tmp, prefix, settings.REDIS_URL, extra_env={"DEMO_SESSIONS": "db"})
    yield site
    stop_site(site)


class Visitor:
    """A browser: its own cookies, or none at all (``cookies=False``)."""

    def __init__(self, site, run, cookies=True):
        self.site, self.run = site, run
        self.jar = http.cookiejar.CookieJar()
        handlers = [urllib.request.HTTPCookieProcessor(self.jar)] if cookies else []
        self.opener = urllib.request.build_opener(*handlers)
        self.pids = set()

    def get(self, path):
        return self._open(urllib.request.Request(f"{self.site.url}/shop/{self.run}/{path}"))

    def post(self, path, **fields):
        if not any(c.name == "csrftoken" for c in self.jar):
            self.get("checkout")  # the form page sets the CSRF cookie
        token = next(c.value for c in self.jar if c.name == "csrftoken")
        data = urllib.parse.urlencode({**fields, "csrfmiddlewaretoken": token}).encode()
        url = f"{self.site.url}/shop/{self.run}/{path}"
        return self._open(urllib.request.Request(url, data=data, method="POST"))

    def _open(self, request):
        with self.opener.open(request, timeout=30) as response:
            assert response.status == 200
            self.pids.add(response.headers["X-Worker-Pid"])
            return response.read().decode(), response.headers.get("X-Cache")


def thanked(page):
    return re.findall(r"Thanks ([^,]*), your order", page)


def cart_of(page):
    return re.findall(r"<li>([^<]*)</li>", page.split('class="cart"')[1])


def who(page):
    return re.search(r'class="who">([^<]*)<', page).group(1)


@pytest.mark.parametrize("warm", [True, False], ids=["warm-page", "cold-page"])
def test_flash_messages_reach_their_visitor_alone(shop, unique, warm):
    run = f"{unique}-{warm}"
    if warm:
        assert Visitor(shop, run, cookies=False).get("")[1] == "miss"
    customers = {name: Visitor(shop, run) for name in ("Alice Smith", "Bob Jones", "Carol")}

    def customer(name):
        seen = []
        for _ in range(4):
            page, state = customers[name].post("order", name=name)
            seen.append((thanked(page), state))
            seen.append((thanked(customers[name].get("")[0]), None))  # shown once
        return seen

    def passer_by(_):
        visitor = Visitor(shop, run, cookies=False)
        return [thanked(visitor.get("")[0]) for _ in range(6)]

    with ThreadPoolExecutor(16) as pool:
        orders = {name: pool.submit(customer, name) for name in customers}
        strangers = list(pool.map(passer_by, range(12)))
    for name, seen in orders.items():
        assert seen.result() == [([name], "bypass"), ([], None)] * 4
    assert strangers == [[[]] * 6] * 12
    assert Visitor(shop, run, cookies=False).get("")[1] == "hit"  # still cached for everyone
    assert len(set().union(*(v.pids for v in customers.values()))) >= 2


def test_carts_and_users_stay_their_own(shop, unique):
    staff = Visitor(shop, unique)
    staff.get(f"sign-in?user=staff-{unique}&staff=1")
    anonymous = {f"guest {i}": Visitor(shop, unique) for i in range(4)}
    shoppers = {"staff": staff, **anonymous}
    for name, visitor in shoppers.items():
        visitor.post("cart/add", item=f"ring for {name}")

    def browse(name):
        visitor = shoppers[name]
        return [(who(page), cart_of(page)) for page, _ in (visitor.get("cart") for _ in range(8))]

    def cookieless(_):
        page, _ = Visitor(shop, unique, cookies=False).get("cart")
        return {(who(page), tuple(cart_of(page)))}

    with ThreadPoolExecutor(12) as pool:
        seen = {name: pool.submit(browse, name) for name in shoppers}
        strangers = set().union(*pool.map(cookieless, range(16)))
    assert seen.pop("staff").result() == [(f"Signed in as staff-{unique}", ["ring for staff"])] * 8
    for name, pages in seen.items():
        assert pages.result() == [("Hello, guest", [f"ring for {name}"])] * 8
    assert strangers == {("Hello, guest", ("(empty)",))}
    greeting = [Visitor(shop, unique).get("greeting")[0] for _ in range(3)]
    assert all("Hello, guest" in page for page in greeting)


def test_a_page_read_by_its_accept_header_reaches_each_format_alone(shop, unique):
    """The price list answers JSON or HTML by ``Accept``, which no ``Vary`` names: read while
    it renders, the header keys the page on every worker, and the page says ``Vary: Accept``."""

    def fetch(accept):
        url = f"{shop.url}/shop/{unique}/price-list"
        request = urllib.request.Request(url, headers={"Accept": accept})
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.headers["Vary"] == "Accept"
            body = response.read().decode()
            return (
                body.startswith("{"),
                response.headers["X-Cache"],
                response.headers["X-Worker-Pid"],
            )

    def visitor(number):
        wants_json = number % 2 == 0
        accept = "application/json" if wants_json else "text/html"
        return [(wants_json, *fetch(accept)) for _ in range(6)]

    with ThreadPoolExecutor(12) as pool:
        seen = [row for rows in pool.map(visitor, range(12)) for row in rows]
    assert all(wanted == got_json for wanted, got_json, _, _ in seen)
    assert sum(state == "miss" for *_, state, _ in seen) == 2  # one render per format
    assert len({pid for *_, pid in seen}) >= 2
