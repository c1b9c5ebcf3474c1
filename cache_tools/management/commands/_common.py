"""What both commands share: resolving dotted paths, aliases, and one-line errors."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import CommandError

from cache_tools.backends import get_backend
from cache_tools.backends.base import Backend
from cache_tools.errors import CacheToolsError


def import_object(path: str) -> Any:
    """The object at a dotted path, through modules and then attributes
    (``pkg.module.Class.method`` works); ``CommandError`` naming the path if there is none."""
    parts = path.split(".")
    for split in range(len(parts) - 1, 0, -1):
        module_name = ".".join(parts[:split])
        try:
            found: Any = importlib.import_module(module_name)
        except ImportError as exc:
            missing = exc.name or ""
            if module_name == missing or module_name.startswith(f"{missing}."):
                continue  # not a module: try a shorter one with attributes after it
            raise CommandError(f"cannot import {path}: {exc}") from exc
        try:
            for attribute in parts[split:]:
                found = getattr(found, attribute)
        except AttributeError:
            rest = path[len(module_name) + 1 :]
            raise CommandError(f"cannot import {path}: {module_name} has no {rest}") from None
        return found
    raise CommandError(f"cannot import {path}: no such module")


def check_aliases(aliases: list[str]) -> None:
    """``CommandError`` naming every alias not in CACHES, and those there are (one message
    for every command)."""
    unknown = [alias for alias in aliases if alias not in settings.CACHES]
    if unknown:
        names = ", ".join(repr(alias) for alias in unknown)
        raise CommandError(
            f"unknown cache alias {names}; CACHES has {', '.join(map(repr, settings.CACHES))}"
        )


def backend_of(alias: str) -> Backend:
    """The alias's adapter, with its cache made, or a ``CommandError`` saying why not."""
    check_aliases([alias])
    try:
        backend = get_backend(alias)
        backend.cache  # noqa: B018 - a cache that cannot work here (UWSGICache) says so now
    except ImproperlyConfigured as exc:
        raise CommandError(str(exc)) from exc
    return backend


@contextmanager
def command_errors() -> Iterator[None]:
    """cache_tools's errors (an outage, a refusal) as a one-line ``CommandError``."""
    try:
        yield
    except (CacheToolsError, ImproperlyConfigured) as exc:
        raise CommandError(str(exc)) from exc
