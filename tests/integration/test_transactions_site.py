"""The seed's fetch-then-create (``@lock_decorator`` around a lookup and a ``create``) in a real
site whose every request runs in a transaction (``ATOMIC_REQUESTS = True``): gunicorn with 4
workers, on PostgreSQL and on SQLite. 16 concurrent requests for one name make one remote
fetch and one row: the lock is held until each request's COMMIT."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest
from django.conf import settings

from testproject.uwsgi_site import start_gunicorn_site, stop_site
from tests.postgres import postgres_socket_directory

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", params=["postgresql", "sqlite"])
def atomic_site(request, tmp_path_factory):
    tmp = tmp_path_factory.mktemp(f"atomic-{request.param}")
    env = {"DEMO_ATOMIC_REQUESTS": "1"}
    if request.param == "postgresql":
        host = postgres_socket_directory()
        name = f"site_{settings.TEST_PREFIX}".lower()
        with psycopg.connect(host=host, user="postgres", dbname="postgres", autocommit=True) as db:
            db.execute(f'DROP DATABASE IF EXISTS "{name}"')
            db.execute(f'CREATE DATABASE "{name}"')
        env.update(DEMO_POSTGRES_HOST=host, DEMO_POSTGRES_DB=name)
    prefix = f"{settings.TEST_PREFIX}-atomic-{request.param}"
    site = start_gunicorn_site(tmp, prefix, settings.REDIS_URL, extra_env=env)
    yield site
    stop_site(site)


def test_fetch_then_create_runs_once_when_every_request_is_a_transaction(atomic_site, unique):
    before = atomic_site.request("/demo/things-fetches").json()["fetches"]
    with ThreadPoolExecutor(16) as pool:
        replies = list(pool.map(atomic_site.request, [f"/demo/things/{unique}?rest=0.3"] * 16))
    assert [reply.status for reply in replies] == [200] * 16  # no IntegrityError
    assert sum(reply.json()["fetched"] for reply in replies) == 1
    assert atomic_site.request("/demo/things-fetches").json()["fetches"] == before + 1
    assert atomic_site.request(f"/demo/things-count/{unique}").json() == {"rows": 1}
    assert len({json.dumps(reply.json()) for reply in replies}) == 2  # the fetch, then hits


def test_forty_reservations_of_a_stock_of_twenty_sell_twenty(atomic_site, unique):
    """A shop's "reserve stock" view under the stock's lock: before, 22-25 of 40 reservations
    succeeded (items sold that do not exist), the lock being free before each COMMIT."""
    assert atomic_site.request(f"/shop/{unique}/stock?set=20").json() == {"stock": 20}
    with ThreadPoolExecutor(40) as pool:
        replies = list(
            pool.map(lambda _: atomic_site.request(f"/shop/{unique}/reserve", b"x"), range(40))
        )
    assert sorted(reply.status for reply in replies) == [200] * 20 + [409] * 20
    assert atomic_site.request(f"/shop/{unique}/stock").json() == {"stock": 0}
