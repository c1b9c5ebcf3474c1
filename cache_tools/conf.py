"""The ``CACHE_TOOLS`` setting: defaults, access and validation.

.. code-block:: python

    CACHE_TOOLS = {
        "CACHE": "default",   # alias in CACHES used when a decorator names none
        "LOCKS": None,        # alias for lock() and lock_decorator (None: CACHE)
        "NAMESPACE": "ct",    # first segment of every key cache_tools writes
        "ADAPTERS": {},       # {"dotted.CacheClass": "dotted.Adapter"} for other backends
        "LOCAL_COPIES": True, # False: ignore cache_aside(local=...) everywhere (debugging)
    }
"""

from __future__ import annotations

import functools
import re
import warnings
from typing import Any

from django.apps import apps
from django.conf import settings
from django.core.signals import setting_changed

DEFAULTS: dict[str, Any] = {
    "CACHE": "default",
    "LOCKS": None,
    "NAMESPACE": "ct",
    "ADAPTERS": {},
    "LOCAL_COPIES": True,
}

_NAMESPACE_RE = re.compile(r"^[A-Za-z0-9_.-]{1,32}$")


def validate(value: Any) -> list[str]:
    """Return one message per problem in a ``CACHE_TOOLS`` value (empty when it is valid)."""
    if not isinstance(value, dict):
        return [f"CACHE_TOOLS must be a dict, not {type(value).__name__}."]
    problems = []
    unknown = sorted(set(value) - set(DEFAULTS))
    if unknown:
        known = ", ".join(sorted(DEFAULTS))
        problems.append(f"CACHE_TOOLS has unknown keys {unknown}; known keys are {known}.")
    alias = value.get("CACHE", DEFAULTS["CACHE"])
    if not isinstance(alias, str) or not alias:
        problems.append(
            f'CACHE_TOOLS["CACHE"] must be a non-empty alias from CACHES, not {alias!r}.'
        )
    locks = value.get("LOCKS")
    if locks is not None and (not isinstance(locks, str) or not locks):
        problems.append(
            f'CACHE_TOOLS["LOCKS"] must be None or a non-empty alias from CACHES, not {locks!r}.'
        )
    namespace = value.get("NAMESPACE", DEFAULTS["NAMESPACE"])
    if not isinstance(namespace, str) or not _NAMESPACE_RE.match(namespace):
        problems.append(
            'CACHE_TOOLS["NAMESPACE"] must be 1-32 characters of letters, digits, '
            f'"_", "." or "-", '
            f"not {namespace!r}."
        )
    if not isinstance(value.get("LOCAL_COPIES", True), bool):
        problems.append(
            f'CACHE_TOOLS["LOCAL_COPIES"] must be True or False, not {value["LOCAL_COPIES"]!r}.'
        )
    adapters = value.get("ADAPTERS", {})
    if not isinstance(adapters, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and k and v for k, v in adapters.items()
    ):
        problems.append(
            'CACHE_TOOLS["ADAPTERS"] must map dotted cache class paths to dotted adapter '
            f"class paths, not {adapters!r}."
        )
    return problems


@functools.cache
def _options() -> dict[str, Any]:
    return {**DEFAULTS, **getattr(settings, "CACHE_TOOLS", {})}


def get(name: str) -> Any:
    """Return one ``CACHE_TOOLS`` option, its default when unset."""
    return _options()[name]


def _forget_options(*, setting: str, **kwargs: Any) -> None:
    if setting == "CACHE_TOOLS":
        _options.cache_clear()


setting_changed.connect(_forget_options)


def default_alias() -> str:
    alias: str = get("CACHE")
    return alias


def lock_alias() -> str:
    """The alias locks use when they name none: ``LOCKS``, else ``CACHE``."""
    alias: str = get("LOCKS") or get("CACHE")
    return alias


def namespace() -> str:
    name: str = get("NAMESPACE")
    return name


#: What is missing without ``cache_tools`` in ``INSTALLED_APPS`` (the decorators work).
NOT_INSTALLED = (
    '"cache_tools" is not in INSTALLED_APPS: its decorators and locks work, but manage.py '
    "check cannot check them, warm_cache, clear_cache and cache_stats are unknown commands, and "
    "the dashboard has no templates. Add it, before django.contrib.admin (the admin's index "
    "then links to the dashboard)."
)
_told_not_installed = False


def warn_if_not_installed() -> None:
    """Say :data:`NOT_INSTALLED` once per process, at the first use of a cache alias."""
    global _told_not_installed
    if not _told_not_installed and apps.ready and not apps.is_installed("cache_tools"):
        _told_not_installed = True
        warnings.warn(NOT_INSTALLED, RuntimeWarning, stacklevel=2)
