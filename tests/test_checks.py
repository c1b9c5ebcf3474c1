import pytest
from django.core import checks
from django.test import override_settings


def cache_tools_messages():
    return [m for m in checks.run_checks() if m.id and m.id.startswith("cache_tools.")]


def test_good_configuration_is_silent():
    assert cache_tools_messages() == []


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
        messages = cache_tools_messages()
    assert [m.id for m in messages] == ["cache_tools.E001"]
    assert fragment in messages[0].msg


def test_unknown_alias_is_e002():
    with override_settings(CACHE_TOOLS={"CACHE": "missing"}):
        messages = cache_tools_messages()
    assert [m.id for m in messages] == ["cache_tools.E002"]
    assert "'missing'" in messages[0].msg and "default" in messages[0].hint
