"""The scenarios that break with per-worker caches, on a real uWSGI (three modes) and a real
gunicorn, 4 workers each."""

import contextlib
import html
import http.cookiejar
import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.conf import settings

from testproject.uwsgi_site import WORKERS, start_site, stop_site, wait_for_workers


def parallel(site, paths, workers=16):
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(site.request, paths))


def from_workers(site, path, at_least=3, most=240):
    """Replies to ``path`` sent in parallel batches until ``at_least`` workers have answered
    (how a server spreads 24 requests over its workers depends on what the machine does)."""
    replies = []
    while len({r.pid for r in replies}) < at_least:
        assert len(replies) < most, (
            f"{most} requests reached {len({r.pid for r in replies})} workers"
        )
        replies += parallel(site, [path] * 24, workers=8)
    return replies


def test_value_set_on_one_worker_is_found_by_all(site, unique):
    body = json.dumps({"key": unique, "value": [1, "two"]}).encode()
    assert site.request("/demo/cache", body).status == 200
    replies = from_workers(site, f"/demo/cache/{unique}")
    assert all(r.status == 200 for r in replies)
    assert all(r.json() == {"key": unique, "value": [1, "two"], "found": True} for r in replies)
    assert site.request(f"/demo/cache/{unique}-missing").json()["found"] is False


def test_each_mode_uses_the_cache_it_names(site, unique, redis_client):
    body = json.dumps({"key": unique, "value": 1}).encode()
    assert site.request("/demo/cache", body).status == 200
    in_redis = any(redis_client.scan_iter(match=f"{site.prefix}:*{unique}*"))
    assert in_redis is (site.mode != "uwsgi-cache"), site.mode


def test_statistics_agree_across_workers(site, unique):
    n = int(unique[:6], 16)  # a number no other test computes
    before = site.request("/demo/info").json()
    replies = parallel(site, [f"/demo/compute/{n}"] * 12, workers=6)
    assert all(r.json() == {"n": n, "square": n * n} for r in replies)
    expected = {
        "computations": before["computations"] + 1,
        "hits_and_misses": before["hits"] + before["misses"] + 12,
    }
    deadline = time.monotonic() + 5
    agreeing = {}
    while time.monotonic() < deadline:
        for reply in parallel(site, ["/demo/info"] * 8, workers=8):
            info = reply.json()
            seen = {
                "computations": info["computations"],
                "hits_and_misses": info["hits"] + info["misses"],
            }
            if seen == expected:
                agreeing[reply.pid] = seen
            else:
                agreeing.pop(reply.pid, None)
        if len(agreeing) >= 3:
            break
        time.sleep(0.1)  # counters reach Redis within FLUSH_DELAY (0.2 s)
    assert len(agreeing) >= 3, agreeing


def test_fetch_then_create_runs_once_under_32_concurrent_requests(site, unique):
    before = site.request("/demo/things-fetches").json()["fetches"]
    replies = parallel(site, [f"/demo/things/{unique}"] * 32, workers=32)
    assert [r.status for r in replies] == [200] * 32
    assert sum(r.json()["fetched"] for r in replies) == 1
    assert {r.json()["result"] for r in replies} == {f"remote data for {unique}"}
    assert site.request("/demo/things-fetches").json()["fetches"] == before + 1


def test_cold_report_is_computed_once_for_16_concurrent_requests(site, unique):
    before = site.request("/demo/report-computations").json()["computations"]
    replies = parallel(site, [f"/demo/report?run={unique}"] * 16, workers=16)
    assert [r.status for r in replies] == [200] * 16
    assert site.request("/demo/report-computations").json()["computations"] == before + 1
    assert sorted(r.headers["X-Cache"] for r in replies).count("miss") == 1


def test_killed_lock_holder_is_replaced(site, unique):

    def doomed_request():
        with contextlib.suppress(OSError):  # its worker is killed mid-request
            site.request(f"/demo/things/{unique}")

    first = threading.Thread(target=doomed_request)
    first.start()
    deadline = time.monotonic() + 10
    holder = None
    while holder is None and time.monotonic() < deadline:
        holder = site.request(f"/demo/things-holder/{unique}").json()["pid"]
        time.sleep(0.01)
    assert holder is not None, "the first request never took the lock"
    os.kill(int(holder), signal.SIGKILL)
    killed = time.monotonic()
    first.join(30)
    reply = site.request(f"/demo/things/{unique}")
    elapsed = time.monotonic() - killed
    assert reply.status == 200 and reply.json()["fetched"] is True
    ttl, fetch = 3, 0.5  # fetch_remote_thing's lock TTL and its simulated remote call
    assert elapsed <= ttl + 1 + fetch, elapsed
    assert site.request("/demo/info").status == 200  # uWSGI respawned the worker


def signed_in(site):
    """An HTTP client with a staff session on the site (the demo's own sign-in URL)."""
    opener = urllib.request.build_opener(
        urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
    )
    with opener.open(site.url + "/demo/login?next=/demo/info", timeout=30) as response:
        assert response.status == 200
    return opener


def page_of(opener, url):
    with opener.open(url, timeout=30) as response:
        return response.read().decode()


def computations_column(page):
    rows = re.findall(r"<tr>.*?</tr>", page.split('id="functions"')[1].split("</table>")[0], re.S)
    return sum(int(re.findall(r'<td class="number">(\d+)</td>', row)[4]) for row in rows[1:])


def chart_total(page, label):
    svg = re.search(rf'<svg class="ct-chart"[^>]*aria-label="{label}".*?</svg>', page, re.S)
    return sum(float(value) for value in re.findall(r"<title>([\d.]+)</title>", svg.group(0)))


def test_the_dashboard_is_staff_only_and_shows_every_workers_figures(site):
    for path in ("/", "/cache-tools/stats.json"):  # anonymous: sent to the login page
        assert b'id="login-form"' in site.request(path).body
    parallel(site, [f"/demo/compute/{n}" for n in range(20)], workers=8)
    site.request("/demo/stats/x")
    site.request("/demo/report")
    opener = signed_in(site)

    def complete(page):
        """Every worker's counts and names arrived (each sends them within a fraction of a
        second), and the chart of the hour adds up to the table (all were this hour)."""
        return (
            "<td>testproject.demo.services.compute</td>" in page
            and "<td>api_stats_calculations</td>" in page
            and "<td>testproject.demo.views.report (view)</td>" in page
            and chart_total(page, "computations per minute") == computations_column(page)
        )

    deadline = time.monotonic() + 10
    page = page_of(opener, site.url + "/")
    while not complete(page):
        assert time.monotonic() < deadline, page
        page = page_of(opener, site.url + "/")
    assert 'href="/demo/compute/7"' in page and 'action="/demo/herd"' in page
    data = json.loads(page_of(opener, site.url + "/cache-tools/stats.json"))
    (compute,) = [f for f in data["functions"] if f["function"].endswith("services.compute")]
    assert compute["computations"] >= 20


def test_the_herd_button_shows_one_computation_and_the_naive_version_many(site):
    def herd(naive):
        body = f"naive={int(naive)}&format=json".encode()
        reply = site.request("/demo/herd", body, timeout=120)
        assert reply.status == 200, reply.body[:500]
        return reply.json()

    seeds = herd(naive=False)
    assert (seeds["requests"], seeds["computations"]) == (32, 1)
    assert len(seeds["workers"]) >= 2  # served by several workers, computed once
    naive = herd(naive=True)
    assert naive["requests"] == 32 and naive["computations"] > 1, naive


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(
    not CHROMIUM and not os.environ.get("CI"), reason="chromium is not installed (CI installs it)"
)
def test_dashboard_renders_in_a_browser_without_console_errors(site, tmp_path):
    assert CHROMIUM, "CI must have chromium installed (.ci/run installs it)"
    site.request("/demo/compute/2")

    def browse():
        return subprocess.run(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                f"--user-data-dir={tmp_path}",
                "--enable-logging=stderr",
                "--v=0",
                "--dump-dom",
                site.url + "/demo/login?next=/",  # signs in, then the dashboard
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )

    # The bars the browser drew add up to the table's computations (all of this hour); a
    # worker's last counts may be a fraction of a second late, so up to three looks.
    for _ in range(3):
        result = browse()
        dom = result.stdout
        assert "testproject.demo.services.compute" in dom
        drawn = chart_total(dom, "computations per minute")
        if drawn == computations_column(dom):
            break
    assert drawn == computations_column(dom) >= 1
    assert 'id="herd"' in dom
    console_errors = [
        line for line in result.stderr.splitlines() if "CONSOLE" in line and "rror" in line
    ]
    assert console_errors == []


def test_process_local_cache_is_warned_about_in_every_worker(tmp_path):
    site = start_site(
        tmp_path,
        "lazy-apps",
        f"{settings.TEST_PREFIX}-locmem",
        settings.REDIS_URL,
        extra_env={"DEMO_CACHE": "locmem"},
    )
    try:
        assert site.request("/demo/info").status == 200
    finally:
        stop_site(site)
    warnings = [
        line for line in site.log.read_text().splitlines() if "is process-local; each uWSGI" in line
    ]
    assert len({line.split("(pid ")[1].split(")")[0] for line in warnings}) == 4, warnings


FORK_WARNING = "forks workers without Python's fork hooks"


def test_the_project_runs_python_fork_hooks_and_is_not_warned(site):
    assert site.request("/demo/info").status == 200
    assert FORK_WARNING not in site.log.read_text()


def test_preforking_without_python_fork_hooks_is_warned_about_once(tmp_path):
    site = start_site(
        tmp_path,
        "preforked",
        f"{settings.TEST_PREFIX}-nohooks",
        settings.REDIS_URL,
        extra_args=("--set", "py-call-uwsgi-fork-hooks=false"),
    )
    try:
        assert site.request("/demo/info").status == 200
    finally:
        stop_site(site)
    assert site.log.read_text().count(FORK_WARNING) == 1  # the master loads the application


def test_every_worker_killed_is_replaced_by_one_that_answers(site, redis_client):
    """The master forks a new worker for each one SIGKILLed. gunicorn's test master does it
    while one of its threads is inside cache calls (``gunicorn_busy_master.py``): a worker
    that inherited a lock held by that thread would hang at its first cache call."""
    beat = f"{site.prefix}:1:gunicorn-master-beat"
    beat_before = int(redis_client.get(beat) or 0)
    workers = wait_for_workers(site, WORKERS)
    for pid in workers:
        os.kill(pid, signal.SIGKILL)
    wait_for_workers(site, WORKERS, exclude=frozenset(workers))
    replies = parallel(site, ["/demo/compute/3"] * 16)
    assert [r.json() for r in replies] == [{"n": 3, "square": 9}] * 16
    if site.mode == "gunicorn":  # its master used the cache throughout
        assert int(redis_client.get(beat)) > beat_before > 0


@pytest.mark.parametrize("how", ["save", "update"])
def test_a_committed_write_reaches_every_worker_through_its_tags(site, unique, how):
    """``depends_on``/``tags`` on the site's own cache (uWSGI's cache in uwsgi-cache mode):
    a price saved (an instance: its tag) or updated (a statement: the function) in one
    worker's transaction is what every worker serves next."""
    run = f"{unique}-{how}"
    assert site.request(f"/shop/{run}/stock?set=1").status == 200
    before = from_workers(site, f"/shop/{run}/price")
    assert {r.json()["price"] for r in before} == {"1.00"}
    body = f"how={how}&price=2.50".encode()
    assert site.request(f"/shop/{run}/set-price", body).json() == {"price": "2.50"}
    after = from_workers(site, f"/shop/{run}/price")
    assert {r.json()["price"] for r in after} == {"2.50"}


@pytest.fixture(scope="module")
def toolbar_site(tmp_path_factory):
    from testproject.uwsgi_site import start_gunicorn_site

    prefix = f"{settings.TEST_PREFIX}-toolbar"
    tmp = tmp_path_factory.mktemp("toolbar")
    site = start_gunicorn_site(tmp, prefix, settings.REDIS_URL, extra_env={"DEMO_TOOLBAR": "1"})
    yield site
    stop_site(site)


@pytest.mark.skipif(
    not CHROMIUM and not os.environ.get("CI"), reason="chromium is not installed (CI installs it)"
)
def test_the_debug_toolbar_panel_shows_what_a_request_did(toolbar_site, tmp_path, unique):
    """django-debug-toolbar, rendered by chromium: the panel's nav subtitle, then its content
    (fetched as the toolbar's own script does) for a page that misses, hits and waits."""
    assert CHROMIUM, "CI must have chromium installed (.ci/run installs it)"

    def browse(path, profile):
        return subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / profile}", "--dump-dom", toolbar_site.url + path],
            capture_output=True, text=True, timeout=60,
        ).stdout  # fmt: skip

    page = browse(f"/demo/toolbar?run={unique}", "page")
    assert "Toolbar demo" in page and 'id="djDebug"' in page
    assert re.search(r"1 hits, 1 misses, \d+ ms waiting", page), page[-3000:]
    waited = int(re.search(r"1 hits, 1 misses, (\d+) ms waiting", page).group(1))
    assert waited >= 50  # the lock the other thread held 100 ms
    request_id = re.search(r'data-request-id="([0-9a-f]+)"', page).group(1)
    rendered = browse(
        f"/__debug__/render_panel/?request_id={request_id}&panel_id=CacheToolsPanel", "panel"
    )
    content = json.loads(html.unescape(re.search(r"<pre[^>]*>(.*)</pre>", rendered, re.S).group(1)))
    panel = content["content"]
    assert "testproject.demo.views.toolbar_value" in panel
    assert re.search(r"<td>miss</td>", panel) and re.search(r"<td>hit</td>", panel)
    assert f"toolbar:{unique}" in panel  # the lock waited for, and the tag invalidated
    fence = re.search(
        r"<td>lock</td><td><code>[^<]*</code></td><td>[\d.]+</td><td>(\d+)</td>", panel
    )
    assert fence and int(fence.group(1)) > 0
