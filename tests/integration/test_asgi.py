"""The test project under a real ASGI server (uvicorn, 4 worker processes, one event loop
each), alone and beside uWSGI on the same keys."""

from concurrent.futures import ThreadPoolExecutor

import pytest
from django.conf import settings

from testproject.uwsgi_site import start_asgi_site, start_site, stop_site


@pytest.fixture(scope="module")
def sites(tmp_path_factory):
    """uvicorn and uWSGI serving the project on the same Redis, with the same key prefix."""
    prefix = f"{settings.TEST_PREFIX}-asgi"
    tmp = tmp_path_factory.mktemp("asgi")
    asgi = start_asgi_site(tmp, prefix, settings.REDIS_URL)
    try:
        wsgi = start_site(tmp, "preforked", prefix, settings.REDIS_URL)
    except BaseException:
        stop_site(asgi)
        raise
    yield asgi, wsgi
    stop_site(wsgi)
    stop_site(asgi)


def fire(site, paths, workers):
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(site.request, paths))


def test_200_concurrent_requests_on_a_cold_async_view_compute_it_once(sites, unique):
    asgi, _ = sites
    before = asgi.request("/demo/areport-computations").json()["computations"]
    replies = fire(asgi, [f"/demo/areport?run={unique}"] * 200, workers=200)
    assert [r.status for r in replies] == [200] * 200
    assert len({r.pid for r in replies}) >= 2  # several workers took part
    assert asgi.request("/demo/areport-computations").json()["computations"] == before + 1
    assert sorted(r.headers["X-Cache"] for r in replies).count("miss") == 1


def test_sync_and_async_workers_share_one_computation(sites, unique):
    asgi, wsgi = sites
    n = int(unique[:6], 16)
    with ThreadPoolExecutor(64) as pool:
        futures = [pool.submit(asgi.request, f"/demo/ashared/{n}") for _ in range(32)]
        futures += [pool.submit(wsgi.request, f"/demo/shared/{n}") for _ in range(32)]
        replies = [future.result() for future in futures]
    assert [r.status for r in replies] == [200] * 64
    assert len({r.json()["computed_by"] for r in replies}) == 1
    computations = wsgi.request(f"/demo/shared-computations/{n}").json()["computations"]
    assert computations == 1
