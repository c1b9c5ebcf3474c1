"""The staff dashboard, its JSON, the figures behind them (monitor) and the signals, against
the run's real Redis: who may see it, that it shows what every process did, that names from
requests or code cannot inject markup, and that what it keeps on the server is bounded."""

from __future__ import annotations

import html
import json
import os
import re
import socket
import threading
import time

import pytest
from django.test import override_settings

from cache_tools import LockLost, cache_aside, lock, monitor, signals, stats
from cache_tools.backends import get_backend
from cache_tools.charts import bar_chart
from cache_tools.testing.contract import run_processes
from tests.test_refused_writes import memcached_alias

pytestmark = pytest.mark.django_db


def called(unique: str, times: int = 3):
    """A fresh cached function, called once cold and ``times - 1`` times warm."""

    def priced(x):
        return x * 2

    priced.__qualname__ = f"priced_{unique}"  # a function id of its own
    priced = cache_aside(timeout=60, key_maker=lambda x: f"{unique}:{x}")(priced)
    for _ in range(times):
        priced(1)
    stats.flush()
    return priced


def row_of(page: str, name: str) -> str:
    """The table row of ``name`` on the page."""
    rows = [row for row in re.findall(r"<tr>.*?</tr>", page, re.S) if f"<td>{name}" in row]
    assert len(rows) == 1, f"{name} is not listed once"
    return rows[0]


def numbers(row: str) -> list[str]:
    return re.findall(r'<td class="number">([^<]*)</td>', row)


# Who may see it ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/cache-tools/", "/cache-tools/stats.json"])
def test_anonymous_users_are_sent_to_the_login_page(client, path):
    response = client.get(path)
    assert response.status_code == 302
    assert response["Location"] == f"/admin/login/?next={path}"


@pytest.mark.parametrize("path", ["/cache-tools/", "/cache-tools/stats.json"])
def test_signed_in_users_who_are_not_staff_are_refused(client, django_user_model, path):
    client.force_login(django_user_model.objects.create_user("visitor"))
    assert client.get(path).status_code == 403


def test_the_dashboard_is_never_cached(admin_client):
    response = admin_client.get("/cache-tools/")
    assert "no-cache" in response["Cache-Control"] and "private" in response["Cache-Control"]


def test_the_admin_index_links_to_the_dashboard(admin_client):
    assert 'href="/cache-tools/"' in admin_client.get("/admin/").content.decode()


# What it shows ----------------------------------------------------------------------------


def test_staff_see_counts_ratio_and_this_minutes_bar(admin_client, unique):
    priced = called(unique, times=4)
    page = admin_client.get("/cache-tools/").content.decode()
    row = row_of(page, priced.flight.function_id)
    hits, misses, _, _, computations, errors, ratio = numbers(row)
    assert (hits, misses, computations, errors, ratio) == ("3", "1", "1", "0", "75%")
    assert row.count('class="bar"') == 1  # one minute with a computation
    assert page.count('<svg class="ct-chart"') >= 3  # two charts of the hour, one per row
    assert 'http-equiv="refresh"' in page
    assert "admin/css/base.css" in page  # the admin's look


def test_json_has_the_same_figures_and_minutes_that_add_up(admin_client, unique):
    priced = called(unique, times=5)
    before = time.time()
    data = json.loads(admin_client.get("/cache-tools/stats.json").content)
    after = time.time()
    (row,) = [r for r in data["functions"] if r["function"] == priced.flight.function_id]
    assert (row["hits"], row["misses"], row["hit_ratio"], row["kind"]) == (4, 1, 0.8, "function")
    assert len(row["per_minute"]) == stats.SERIES_MINUTES
    assert sum(minute["hits"] for minute in row["per_minute"]) == 4
    # The newest minute is the one the view ran in (which may not be the one the test ends in).
    assert before // 60 * 60 <= row["per_minute"][-1]["minute"] <= after


def _defined_only_here(index, barrier, unique):
    @cache_aside(timeout=60, key_maker=lambda: f"{unique}:only")
    def only_in_the_child():
        return 1

    only_in_the_child()
    only_in_the_child()
    stats.flush()
    return only_in_the_child.flight.function_id


def test_functions_only_other_processes_define_are_listed(unique):
    (function_id,) = run_processes(1, _defined_only_here, unique)
    (row,) = [r for r in monitor.functions() if r.function == function_id]
    assert (row.kind, row.info.hits, row.info.misses) == ("unknown", 1, 1)


def test_held_locks_show_age_fence_and_waiters(admin_client, unique):
    name = f"report-{unique}"
    waiting = threading.Event()
    with lock(name) as held:

        def wait_for_it():
            waiting.set()
            with lock(name, blocking_timeout=30):
                pass

        waiter = threading.Thread(target=wait_for_it)
        waiter.start()
        waiting.wait()
        deadline = time.monotonic() + 5
        while monitor_row(name).state.waiters != 1 and time.monotonic() < deadline:
            time.sleep(0.01)  # the waiter's acquire is on its way to the server
        stats.flush()
        row = monitor_row(name)
        assert row.state.held and row.state.fence == held.fence and row.state.waiters == 1
        assert row.state.holder == f"{socket.gethostname()}:{os.getpid()}"
        assert 0 <= row.state.age <= held.held_for + 0.5
        page = admin_client.get("/cache-tools/").content.decode()
        assert str(held.fence) in row_of(page, name)
    waiter.join()
    stats.flush()
    row = monitor_row(name)
    assert not row.state.held
    assert (row.info.acquired, row.info.waited, row.info.lost) == (2, 1, 0)
    assert row.info.wait_ms > 0


def monitor_row(name: str) -> monitor.LockFigures:
    stats.flush()
    (row,) = [r for r in monitor.locks() if r.name == name]
    return row


def test_hostile_lock_names_are_shown_escaped(admin_client, unique):
    name = f'<script>alert("{unique}")</script>'
    with lock(name):
        stats.flush()
        page = admin_client.get("/cache-tools/").content.decode()
    assert name not in page
    assert f"<td>{html.escape(name)}</td>" in page


def test_chart_labels_and_values_are_escaped():
    svg = bar_chart([1, None, 2], label="<b>x</b>")
    assert "<b>" not in svg and "&lt;b&gt;" in svg
    assert svg.count('class="bar"') == 2  # None: no bar


# What it keeps on the server --------------------------------------------------------------


def test_minute_counts_expire_within_the_hour_they_chart(redis_client, unique):
    priced = called(unique)
    backend = get_backend()
    stats_key = backend.stats_key(priced.flight.function_id)
    minutes = list(redis_client.scan_iter(match=f"{stats_key}:m*"))
    assert minutes, "no minute was recorded"
    for key in minutes:
        assert 0 < redis_client.pttl(key) <= (stats.SERIES_MINUTES + 1) * 60_000


def test_lock_counts_expire_an_hour_after_the_lock_was_last_used(redis_client, unique):
    """Lock names can be as many as the objects they guard: their counts must not pile up."""
    with lock(f"per-object-{unique}"):
        pass
    stats.flush()
    backend = get_backend()
    counts, registry = backend.lock_counts_key(), backend.registry_key("locks")
    assert redis_client.hget(counts, f"acquired:per-object-{unique}") == b"1"
    assert redis_client.zscore(registry, f"per-object-{unique}")
    for key in (counts, registry):
        assert 0 < redis_client.pttl(key) <= stats.LOCK_SECONDS * 1000


@pytest.mark.parametrize("alias", ["default", "locmem"])
def test_registries_forget_names_not_noted_within_max_age(alias, unique):
    backend = get_backend(alias)
    registry = backend.registry_key(f"test-{unique}")
    backend.note_names(registry, {"old": 1000.0, "recent": 4000.0}, keep=10, max_age=3600)
    backend.note_names(registry, {"new": 5000.0}, keep=10, max_age=3600)
    assert backend.read_names(registry) == {"recent": 4000.0, "new": 5000.0}


@pytest.mark.parametrize("alias", ["default", "locmem"])
def test_registries_keep_only_the_most_recent_names(alias, unique):
    backend = get_backend(alias)
    registry = backend.registry_key(f"test-{unique}")
    backend.note_names(registry, {f"n{i}": 1000.0 + i for i in range(5)}, keep=3)
    backend.note_names(registry, {"n0": 2000.0}, keep=3)  # noted again: the newest now
    assert backend.read_names(registry) == {"n3": 1003.0, "n4": 1004.0, "n0": 2000.0}


def test_a_lock_is_listed_again_at_once_after_clear_cache(redis_client, unique):
    """Locks are listed from the server's registry only: after a clear (or a restart) the
    next flush of a process that uses the lock registers it again, though this process
    registered it moments before."""
    name = f"listed-{unique}"
    for _ in range(2):
        with lock(name):
            pass
        stats.flush()
        assert name in {row.name for row in monitor.locks()}
        backend = get_backend()
        redis_client.delete(backend.registry_key("locks"), backend.lock_counts_key())


# Signals ----------------------------------------------------------------------------------


def test_signals_name_the_function_and_cost_nothing_once_disconnected(unique):
    heard = []

    def receiver(signal, sender, function, alias, **kwargs):
        heard.append((signal, sender, function))

    connected = [signals.cache_hit, signals.cache_miss, signals.computation]
    for signal in connected:
        signal.connect(receiver)
    try:
        assert signals.listening
        priced = called(unique, times=2)
    finally:
        for signal in connected:
            signal.disconnect(receiver)
    function_id = priced.flight.function_id
    assert [(s, sender) for s, sender, f in heard if f == function_id] == [
        (signals.cache_miss, priced),
        (signals.computation, priced),
        (signals.cache_hit, priced),
    ]
    assert not signals.listening


def test_a_receiver_can_listen_to_one_function(unique):
    heard = []
    other = called(f"{unique}-other", times=1)

    def receiver(sender, function, **kwargs):
        heard.append(function)

    signals.cache_hit.connect(receiver, sender=other)
    try:
        mine = called(unique, times=2)
        other(1)
    finally:
        signals.cache_hit.disconnect(receiver, sender=other)
    assert heard == [other.flight.function_id] and mine.flight.function_id not in heard


def test_lock_signals_report_waits_and_losses(redis_client, unique):
    waited, lost = [], []

    def on_wait(sender, name, alias, seconds, **kwargs):
        waited.append((sender, seconds))

    def on_lost(sender, name, alias, **kwargs):
        lost.append(sender)

    signals.lock_waited.connect(on_wait)
    signals.lock_lost.connect(on_lost)
    try:
        name = f"signals-{unique}"
        taken, release = threading.Event(), threading.Event()

        def hold():
            with lock(name):
                taken.set()
                release.wait(10)

        holder = threading.Thread(target=hold)
        holder.start()
        taken.wait(10)
        threading.Timer(0.1, release.set).start()
        second = lock(name)
        assert second.acquire(blocking_timeout=10)  # after the holder's release
        holder.join()
        redis_client.delete(second.key)  # the server forgets it while held
        with pytest.raises(LockLost):
            second.release()
    finally:
        signals.lock_waited.disconnect(on_wait)
        signals.lock_lost.disconnect(on_lost)
    assert [sender for sender, _ in waited] == [name] and waited[0][1] > 0
    assert lost == [name]


def test_the_json_endpoint_serves_what_monitor_reports(admin_client, unique):
    called(unique)
    served = json.loads(admin_client.get("/cache-tools/stats.json").content)
    expected = monitor.snapshot()
    assert [r["function"] for r in served["functions"]] == [
        r["function"] for r in expected["functions"]
    ]


def test_functions_on_an_alias_no_longer_configured_are_skipped(admin_client, unique, settings):
    settings.CACHES = {**settings.CACHES, "gone": settings.CACHES["default"]}
    gone = cache_aside(timeout=60, cache="gone", key_maker=lambda: unique)(lambda: 1)
    gone()
    settings.CACHES = {k: v for k, v in settings.CACHES.items() if k != "gone"}
    assert admin_client.get("/cache-tools/").status_code == 200


def _note_at_once(index, barrier, caches, registry):
    from django.test import override_settings

    with override_settings(CACHES=caches):
        backend = get_backend("mc")
        barrier.wait()
        backend.note_names(backend.registry_key(registry), {f"p{index}": float(index)}, 100)


def test_processes_noting_at_once_on_memcached_lose_no_name(memcached_url, unique):
    """Where the registry is one pickled value (memcached, uWSGI, files), notes made at the
    same moment by several processes must not overwrite each other."""
    caches = memcached_alias(memcached_url, f"{unique}-reg")
    run_processes(8, _note_at_once, caches, unique)
    with override_settings(CACHES=caches):
        backend = get_backend("mc")
        assert set(backend.read_names(backend.registry_key(unique))) == {f"p{i}" for i in range(8)}


def test_an_unreachable_server_is_reported_not_shown_as_zeros(admin_client, dead_alias):
    page = admin_client.get("/cache-tools/")
    assert page.status_code == 503 and b"dead" in page.content
    served = admin_client.get("/cache-tools/stats.json")
    assert served.status_code == 503 and "dead" in json.loads(served.content)["error"]
