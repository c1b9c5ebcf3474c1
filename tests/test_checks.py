import pytest
from django.conf import settings
from django.core import checks as django_checks
from django.test import override_settings

from cache_tools import cache_aside, checks, lock_decorator


@pytest.fixture(autouse=True)
def only_these_decorators(monkeypatch):
    """Checks look at every decorated function of the process: start each test with none."""
    monkeypatch.setattr(checks, "_uses", [])


def ids():
    return [m.id for m in django_checks.run_checks() if m.id and m.id.startswith("cache_tools.")]


def messages(check_id):
    return [m for m in django_checks.run_checks() if m.id == check_id]


def test_good_configuration_is_silent():
    @cache_aside(cache="default")
    @lock_decorator(cache="django")
    def fine():
        pass

    assert ids() == []


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("default", "must be a dict"),
        ({"CACHE": ""}, 'CACHE_TOOLS["CACHE"] must be a non-empty alias'),
        ({"NAMESPACE": "has space"}, 'CACHE_TOOLS["NAMESPACE"] must be 1-32 characters'),
        ({"NAMESPAEC": "x"}, "unknown keys ['NAMESPAEC']"),
    ],
)
def test_invalid_setting_is_e001(value, fragment):
    with override_settings(CACHE_TOOLS=value):
        found = messages("cache_tools.E001")
        assert ids() == ["cache_tools.E001"]
    assert fragment in found[0].msg


def test_unknown_alias_is_e002():
    with override_settings(CACHE_TOOLS={"CACHE": "missing"}):
        assert ids() == ["cache_tools.E002"]
        assert "'missing'" in messages("cache_tools.E002")[0].msg

    @cache_aside(cache="nowhere")
    def misconfigured():
        pass

    (error,) = messages("cache_tools.E002")
    assert "misconfigured" in error.msg and "'nowhere'" in error.msg


def test_process_local_alias_is_w001():
    @lock_decorator(cache="locmem")
    def local_lock():
        pass

    (warning,) = messages("cache_tools.W001")
    assert "'locmem'" in warning.msg and "each worker has its own copy" in warning.msg
    assert "shared backend" in warning.hint


def test_redis_alias_without_key_prefix_is_w002():
    caches = {**settings.CACHES, "bare": {**settings.CACHES["default"], "KEY_PREFIX": ""}}
    with override_settings(CACHES=caches):
        (warning,) = messages("cache_tools.W002")
    assert "'bare'" in warning.msg and "empty the whole server or database" in warning.msg


def test_lock_on_dummy_cache_is_w003():
    @cache_aside(cache="dummy")
    def passes_through():
        pass

    assert ids() == []

    @lock_decorator(cache="dummy")
    def never_excludes():
        pass

    (warning,) = messages("cache_tools.W003")
    assert "never_excludes" in warning.msg


@pytest.mark.parametrize(
    ("options", "warned"),
    [
        # as uwsgi.opt gives them: bytes from an ini file, True for a bare flag
        ({"master": b"true", "processes": b"4"}, True),
        ({"master": True, "processes": b"4", "py-call-uwsgi-fork-hooks": b"true"}, False),
        ({"master": True, "processes": b"4", "py-call-uwsgi-fork-hooks": b"false"}, True),
        ({"master": True, "processes": b"4", "py-call-uwsgi-fork-hooks": b"Off"}, True),
        ({"master": True, "processes": b"4", "lazy-apps": True}, False),
        ({"master": True, "processes": b"4", "lazy-apps": b"false"}, True),
        ({"master": True, "lazy": b"1"}, False),
        ({"master": b"no", "processes": b"1"}, False),  # one process, nothing forks
        ({"workers": b"2"}, True),  # no master: the first worker forks the others
        ({"master": True, "lazy-apps": [b"true", b"false"]}, True),  # the last one counts
        ({"master": True, "py-call-uwsgi-fork-hooks": b""}, False),  # "name =" in an ini: on
    ],
)
def test_uwsgi_forking_without_python_fork_hooks_is_recognised(options, warned):
    assert checks.forks_without_hooks(options) is warned


NOT_INSTALLED_PROJECT = """
import sys, warnings
import django
from django.conf import settings
settings.configure(
    INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth"],
    CACHES={"default": {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": sys.argv[1],
                        "KEY_PREFIX": "not-installed"}},
    ROOT_URLCONF=__name__, SECRET_KEY="x", ALLOWED_HOSTS=["*"],
)
django.setup()
from cache_tools import cache_aside

@cache_aside(timeout=5)
def double(n):
    return 2 * n

with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    assert double(2) == 4 and double(3) == 6   # the decorator works
print(len(caught), caught[0].message if caught else "")
from django.core.exceptions import ImproperlyConfigured
from django.test import RequestFactory
from cache_tools.dashboard import dashboard
request = RequestFactory().get("/")
request.user = type("Staff", (), {"is_active": True, "is_staff": True, "is_authenticated": True})()
try:
    dashboard(request)
except ImproperlyConfigured as exc:
    print("dashboard:", exc)
"""


def test_without_installed_apps_the_first_use_says_to_add_it():
    """Before: nothing said it; the commands were "Unknown command" and the dashboard a 500
    with TemplateDoesNotExist."""
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-c", NOT_INSTALLED_PROJECT, settings.REDIS_URL],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    first, second = result.stdout.splitlines()
    assert first.startswith('1 "cache_tools" is not in INSTALLED_APPS')  # once, not per call
    assert "before django.contrib.admin" in first
    assert second.startswith('dashboard: "cache_tools" is not in INSTALLED_APPS')


def test_a_decorators_unknown_alias_shows_with_an_invalid_setting():
    """One ``check`` shows both problems (before: E002 only once E001 was fixed)."""

    @cache_aside(cache="nowhere")
    def misconfigured():
        pass

    with override_settings(CACHE_TOOLS={"NAMESPACE": "has space"}):
        assert sorted(ids()) == ["cache_tools.E001", "cache_tools.E002"]


def overlapping(first_prefix, second_prefix, second_location=None):
    alias = dict(settings.CACHES["default"])
    return {
        **settings.CACHES,
        "app": {**alias, "KEY_PREFIX": first_prefix},
        "app_sessions": {
            **alias,
            "KEY_PREFIX": second_prefix,
            "LOCATION": second_location or alias["LOCATION"],
        },
    }


def test_aliases_whose_prefixes_overlap_on_one_server_are_w006():
    with override_settings(CACHES=overlapping("app1", "app1:1")):
        (warning,) = messages("cache_tools.W006")
    assert "'app'" in warning.msg and "'app_sessions'" in warning.msg
    assert "clear_cache --cache app deletes 'app_sessions'" in warning.msg


@pytest.mark.parametrize(
    ("second_prefix", "location"),
    [("app2", None), ("app1:1", "redis://127.0.0.1:1/5")],  # apart, or another server
)
def test_prefixes_apart_or_on_another_server_are_silent(second_prefix, location):
    with override_settings(CACHES=overlapping("app1", second_prefix, location)):
        assert messages("cache_tools.W006") == []


def test_clear_cache_of_the_shorter_prefix_does_delete_the_others_keys():
    """What W006 warns about, for real: the check's claim holds on the server."""
    from django.core.cache import caches
    from django.core.management import call_command

    with override_settings(CACHES=overlapping("w006", "w006:1")):
        caches["app_sessions"].set("session", 1, 60)
        call_command("clear_cache", "--cache", "app", verbosity=0)
        assert caches["app_sessions"].get("session") is None
