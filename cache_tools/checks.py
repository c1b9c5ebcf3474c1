"""System checks for ``cache_tools`` (``manage.py check``).

``cache_tools.E001``
    The ``CACHE_TOOLS`` setting is invalid.
``cache_tools.E002``
    ``CACHE_TOOLS["CACHE"]`` names an alias that is not in ``CACHES``.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error

from . import conf


def check_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    value = getattr(settings, "CACHE_TOOLS", {})
    problems = conf.validate(value)
    errors: list[CheckMessage] = [
        Error(message, hint="See the CACHE_TOOLS reference in the docs.", id="cache_tools.E001")
        for message in problems
    ]
    if problems:
        return errors
    alias = conf.default_alias()
    if alias not in settings.CACHES:
        errors.append(
            Error(
                f'CACHE_TOOLS["CACHE"] is {alias!r}, which is not an alias in CACHES.',
                hint=f"Use one of {sorted(settings.CACHES)} or add {alias!r} to CACHES.",
                id="cache_tools.E002",
            )
        )
    return errors
