"""``manage.py cache_stats`` and the Prometheus collector: the dashboard's figures in a
terminal, as JSON and as metrics, with bad input refused in one line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management.base import CommandError
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from cache_tools import cache_aside, lock, stats
from cache_tools.contrib.prometheus import register
from tests.test_command_inputs import manage, run

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def priced(unique):
    def priced(x):
        return x

    priced.__qualname__ = f"priced_{unique}"
    cached = cache_aside(timeout=60, key_maker=lambda x: f"{unique}:{x}")(priced)
    for _ in range(3):
        cached(1)
    with lock(f"nightly-{unique}"):
        pass
    stats.flush()
    return cached


def test_the_table_lists_functions_with_their_ratio_and_the_locks(priced, unique):
    output = run("cache_stats")
    (line,) = [line for line in output.splitlines() if priced.flight.function_id in line]
    assert line.split()[1:] == ["default", "2", "1", "0", "0", "1", "0", "66.7%"]
    (line,) = [line for line in output.splitlines() if f"nightly-{unique}" in line]
    assert line.split()[1:3] == ["default", "free"]


def test_json_is_keyed_by_dotted_path(priced):
    data = json.loads(run("cache_stats", "--json"))
    figures = data["functions"][priced.flight.function_id]
    assert (figures["hits"], figures["misses"], figures["computations"]) == (2, 1, 1)


def test_watch_refreshes_without_terminal_codes(priced):
    output = run("cache_stats", "--watch", "--count", "3", "--interval", "0.01")
    assert output.count(priced.flight.function_id) == 3
    assert "\x1b" not in output  # no terminal: no screen clearing


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--interval", "0"], "--interval must be a positive number"),
        (["--interval", "-1"], "--interval must be a positive number"),
        (["--watch", "--count", "0"], "--count must be 1 or more"),
        (["--count", "2"], "--count goes with --watch"),
        (["--cache", "nope"], "nope"),
    ],
)
def test_bad_arguments_are_one_line_errors(arguments, message):
    with pytest.raises(CommandError, match=message):
        run("cache_stats", *arguments)


def test_bad_arguments_exit_1_without_a_traceback():
    result = manage("cache_stats", "--interval", "abc")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    result = manage("cache_stats", "--cache", "nope")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith("CommandError:") and "nope" in result.stderr


# Starts a command the way a terminal does: SIGINT at its default (a shell without job control
# starts background jobs, and so this test run, with it ignored, which exec would pass on).
AS_IN_A_TERMINAL = (
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
    "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])"
)


def test_ctrl_c_ends_watch_quietly(priced):
    environment = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"}
    command = ["manage.py", "cache_stats", "--watch", "--interval", "60"]
    process = subprocess.Popen(
        [sys.executable, "-c", AS_IN_A_TERMINAL, *command],
        cwd=ROOT,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    first = process.stdout.readline()  # the first table is out: it is sleeping now
    assert first
    process.send_signal(signal.SIGINT)
    _, errors = process.communicate(timeout=30)
    assert process.returncode == 0 and "Traceback" not in errors


def test_prometheus_metrics_carry_the_shared_counts(priced, unique):
    registry = CollectorRegistry()
    register(registry)
    families = {
        f.name: f for f in text_string_to_metric_families(generate_latest(registry).decode())
    }
    labels = {"function": priced.flight.function_id, "alias": "default"}

    def value(family, **match):
        (sample,) = [
            s for s in families[family].samples if s.labels == match and s.name.endswith("_total")
        ]
        return sample.value

    assert value("cache_tools_hits", **labels) == 2
    assert value("cache_tools_misses", **labels) == 1
    assert value("cache_tools_computations", **labels) == 1
    lock_labels = {"lock": f"nightly-{unique}", "alias": "default"}
    assert value("cache_tools_lock_acquisitions", **lock_labels) == 1
    (held,) = [s for s in families["cache_tools_lock_held"].samples if s.labels == lock_labels]
    assert held.value == 0


def test_an_unreachable_server_is_a_one_line_error(dead_alias):
    with pytest.raises(CommandError, match="dead"):
        run("cache_stats", "--cache", dead_alias)


def test_names_cannot_forge_rows_reach_the_terminal_or_widen_the_table(unique):
    hostile = [
        f"forged-{unique}\nnightly  default  free  -  -  -  0  99  0  0",
        f"ansi-{unique}\x1b[2J\x1b[31mred",
        f"bidi-{unique}\u202etxt.exe",
        f"long-{unique}-" + "x" * 10_000,
    ]
    for name in hostile:
        with lock(name):
            pass
    stats.flush()
    output = run("cache_stats")
    assert "\x1b" not in output and "\u202e" not in output
    assert max(len(line) for line in output.splitlines()) < 300
    lines = [line for line in output.splitlines() if unique in line]
    assert len(lines) == len(hostile)  # one row each: no forged row
    assert any(f"forged-{unique}\\nnightly" in line for line in lines)
    assert any(f"ansi-{unique}\\x1b[2J" in line for line in lines)
    data = json.loads(run("cache_stats", "--json"))
    assert set(hostile) <= {row["name"] for row in data["locks"]}  # exact in JSON


def test_tag_invalidations_are_counted_everywhere_they_are_shown(unique, client, admin_user):
    from cache_tools import invalidate_tags

    tag = f"product:{unique}"
    invalidate_tags(tag)
    invalidate_tags(tag, f"{tag}:other")
    stats.flush()
    table = run("cache_stats")
    assert any(line.split() == [tag, "default", "2"] for line in table.splitlines())
    shown = json.loads(run("cache_stats", "--json"))["tags"]
    assert {"name": tag, "alias": "default", "invalidated": 2} in shown
    registry = CollectorRegistry()
    register(registry)
    families = {
        f.name: f for f in text_string_to_metric_families(generate_latest(registry).decode())
    }
    samples = families["cache_tools_tag_invalidations"].samples
    assert next(s.value for s in samples if s.labels == {"tag": tag, "alias": "default"}) == 2
    client.force_login(admin_user)
    page = client.get("/cache-tools/").content.decode()
    assert 'id="tags"' in page and tag in page
