"""The Lua scripts: each carries the definitions of ``_common.lua`` it calls (directly or
through each other) and no others, and each compiles on the server."""

import re
from pathlib import Path

import pytest

from cache_tools.backends import get_backend, redis_scripts
from cache_tools.backends.redis_scripts import get_script

HERE = Path(redis_scripts.__file__).parent
SCRIPTS = sorted(path.stem for path in HERE.glob("*.lua") if path.stem != "_common")


def defined(source: str) -> set[str]:
    return set(re.findall(r"^local function (\w+)", source, re.MULTILINE))


def called(source: str) -> set[str]:
    """Names called, or passed to ``pcall``."""
    return set(re.findall(r"\b(\w+)\(", source)) | set(re.findall(r"pcall\((\w+)", source))


def test_every_script_is_found():
    assert {"lock_acquire", "lock_release", "aside_fetch", "aside_store"} <= set(SCRIPTS)


@pytest.mark.parametrize("name", SCRIPTS)
def test_a_script_carries_what_it_calls_and_nothing_more(name):
    source = get_script(name).source
    shared = defined((HERE / "_common.lua").read_text())
    # Every shared function the script calls is defined in it, before the script's own code ...
    assert called(source) & shared <= defined(source)
    # ... and every function it defines is called somewhere in it.
    for function in defined(source):
        assert len(re.findall(rf"\b{function}\b", source)) >= 2, function  # definition + call
    get_backend().client().script_load(source)  # compiles on the server


def test_the_lock_scripts_leave_out_what_they_do_not_use():
    assert "hand_over" not in defined(get_script("lock_acquire").source)
    assert "take_lock" not in defined(get_script("lock_release").source)
    assert defined(get_script("lock_extend").source) == {"script"}  # its own body alone
