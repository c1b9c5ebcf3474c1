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
