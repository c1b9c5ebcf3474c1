"""Every bad input to the commands is a one-line CommandError (exit 1, no traceback), and
nothing is deleted on the way there."""

import io
import itertools
import os
import subprocess
import sys
from pathlib import Path

import pytest
import redis
from django.conf import settings
from django.core.cache import caches
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import override_settings

from cache_tools import Call, cache_aside, warmup
from testproject.demo.models import Thing

ROOT = Path(__file__).resolve().parents[1]


def run(command, *args, **options):
    out, err = io.StringIO(), io.StringIO()
    call_command(command, *args, stdout=out, stderr=err, **options)
    return out.getvalue() + err.getvalue()


def manage(*args, stdin=subprocess.DEVNULL, env=None):
    """``manage.py`` in a process of its own, with no terminal."""
    environment = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", **(env or {})}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=environment,
        stdin=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def ops(unique, private_redis):
    """An alias of its own on the run's private server (--flush empties it), with a key in it
    and a foreign key beside it."""
    prefix = f"{settings.TEST_PREFIX}-in-{unique}"
    alias = {
        "ops": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": private_redis.url,
            "KEY_PREFIX": prefix,
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.5, "SOCKET_TIMEOUT": 0.5},
        }
    }
    client = redis.Redis.from_url(private_redis.url)
    client.set(f"{prefix}-foreign", 1)
    with override_settings(CACHES={**settings.CACHES, **alias}):
        caches["ops"].set("user:1", 1)
        yield client, prefix
    client.delete(f"{prefix}-foreign")


def untouched(client, prefix):
    return client.exists(f"{prefix}:1:user:1") and client.exists(f"{prefix}-foreign")


OPTIONS = {
    "flush": ["--flush", "--noinput"],
    "pattern": ["--pattern", "user:*"],
    "function": ["--function", "testproject.demo.services.compute"],
    "cache": ["--cache", "ops"],
    "all_caches": ["--all-caches"],
    "dry_run": ["--dry-run"],
    "noinput": ["--noinput"],
}
CONFLICTS = {
    ("flush", "pattern"),
    ("flush", "function"),
    ("pattern", "function"),
    ("function", "cache"),
    ("function", "all_caches"),
    ("cache", "all_caches"),
    # Only because the test settings have aliases that cannot list keys (LocMem, Dummy):
    ("pattern", "all_caches"),
}


@pytest.mark.parametrize("pair", list(itertools.combinations(OPTIONS, 2)), ids="+".join)
def test_every_pair_of_clear_cache_options(ops, pair):
    """A pair that would widen (or silently ignore part of) a deletion is refused before
    anything is deleted; the others do what they say."""
    client, prefix = ops
    args = [arg for option in pair for arg in OPTIONS[option]]
    if "cache" not in pair and "all_caches" not in pair and "function" not in pair:
        args += ["--cache", "ops"]
    conflict = tuple(sorted(pair)) in {tuple(sorted(c)) for c in CONFLICTS}
    if conflict:
        with pytest.raises(CommandError):
            run("clear_cache", *args)
        assert untouched(client, prefix)
        return
    if "all_caches" in pair and "dry_run" not in pair:
        args += ["--dry-run"]  # the other aliases are the test run's own; do not clear them
    run("clear_cache", *args)
    if "flush" in pair and "dry_run" not in pair and "all_caches" not in pair:
        assert client.dbsize() == 0  # what --flush says it does, and only with it
        return
    assert client.exists(f"{prefix}-foreign")  # never another application's key
    if "dry_run" in pair or "all_caches" in pair or "function" in pair:
        assert untouched(client, prefix)


def test_flush_with_a_pattern_never_flushes(ops):
    client, prefix = ops
    with pytest.raises(CommandError, match="cannot keep to --pattern"):
        run("clear_cache", "--cache", "ops", "--flush", "--pattern", "user:*", "--noinput")
    assert untouched(client, prefix)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--pattern", ""], "pass '\\*' to mean every key"),
        (["--pattern", "user:["], "not a valid glob"),
        (["--pattern", "trailing\\"], "not a valid glob"),
        (["--cache", "nosuch"], "unknown cache alias 'nosuch'"),
        (["--function", "no.such.module.function"], "cannot import no.such.module.function"),
        (["--function", "testproject.demo.services.nothing"], "has no nothing"),
        (["--function", "testproject.demo.services.time"], "not a cache_aside function"),
    ],
)
def test_clear_cache_bad_input(ops, args, message):
    client, prefix = ops
    needs_alias = "--cache" not in args and "--function" not in args
    with pytest.raises(CommandError, match=message):
        run("clear_cache", *(["--cache", "ops", *args] if needs_alias else args))
    assert untouched(client, prefix)


def test_flush_without_a_terminal_is_refused():
    result = manage("clear_cache", "--cache", "default", "--flush")
    assert result.returncode == 1
    assert "no terminal to confirm on: pass --noinput" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_commands_fail_in_one_line_with_status_1():
    for args, message in [
        (["clear_cache", "--pattern", ""], "CommandError: --pattern ''"),
        (
            ["warm_cache", "--cache", "nosuch"],
            "CommandError: unknown cache alias 'nosuch'; CACHES has",
        ),
        (["clear_cache", "--cache", "default", "--cache", "x", "--all-caches"], "cannot be"),
    ]:
        result = manage(*args)
        assert result.returncode == 1, (args, result.stderr)
        assert message in result.stderr and "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_dummy_and_local_caches_say_what_clearing_means():
    assert "stores nothing (DummyCache); nothing to clear" in run("clear_cache", "--cache", "dummy")
    assert "in this process only" in run("clear_cache", "--cache", "locmem")


def test_verbosity_zero_prints_nothing(ops):
    assert run("clear_cache", "--cache", "ops", "--dry-run", verbosity=0) == ""
    assert run("warm_cache", "testproject.demo.services.compute", "--dry-run", verbosity=0) == ""


class Shop:
    def __init__(self, pk):
        self.pk = pk

    def __cache_key__(self):
        return self.pk

    @cache_aside(timeout=60)
    def price(self, item):
        return f"{self.pk}:{item}"


def test_cached_methods_warm_and_clear(unique):
    shop = Shop(unique)
    warmup.register(Shop.price, [Call(shop, "tea"), Call(shop, "milk")], name=f"{unique}-shop")
    assert "computed 2" in run("warm_cache", f"{unique}-shop")
    assert shop.price.is_cached("tea")
    out = run("clear_cache", "--function", "tests.test_command_inputs.Shop.price")
    assert "invalidated every entry of tests.test_command_inputs.Shop.price" in out
    assert not shop.price.is_cached("tea")


@pytest.mark.django_db
def test_call_shows_model_instances_readably():
    thing = Thing.objects.create(name="t", result="r")
    assert repr(Call(thing, detail=True)) == f"Call(demo.Thing(pk={thing.pk}), detail=True)"


def test_warm_cache_during_an_outage_fails_and_counts(private_redis, down_alias, unique):
    @cache_aside(timeout=60, cache=down_alias, key_maker=lambda x: (unique, x))
    def outage_warm(x):
        return x

    warmup.register(outage_warm, [1, 2, 3], name=f"{unique}-outage")
    private_redis.stop()
    try:
        with pytest.raises(CommandError, match="3 entries could not be stored") as info:
            run("warm_cache", f"{unique}-outage")
        assert info.value.returncode == 1
        with pytest.raises(CommandError, match="is unreachable"):
            run("warm_cache", "--list", f"{unique}-outage")
    finally:
        private_redis.start()
    assert "computed 3" in run("warm_cache", f"{unique}-outage")


def test_warm_cache_jobs_must_be_positive():
    with pytest.raises(CommandError, match="--jobs must be 1 or more"):
        run("warm_cache", "--jobs", "0")


@pytest.mark.parametrize("command", ["clear_cache", "warm_cache", "cache_stats"])
def test_every_command_names_an_unknown_alias_the_same_way(command):
    known = ", ".join(map(repr, settings.CACHES))
    with pytest.raises(CommandError) as raised:
        run(command, "--cache", "nosuch")
    assert str(raised.value) == f"unknown cache alias 'nosuch'; CACHES has {known}"
