"""``manage.py clear_cache``: delete only the keys that belong to an alias."""

from __future__ import annotations

import time
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.module_loading import import_string

from cache_tools import conf
from cache_tools.aside import CachedFunction
from cache_tools.backends import get_backend
from cache_tools.backends.generic import CacheAPIBackend
from cache_tools.backends.redis import ScanReport
from cache_tools.errors import BackendUnavailable


class Command(BaseCommand):
    help = (
        "Delete the keys of a cache alias (its KEY_PREFIX and VERSION), found with SCAN and "
        "deleted with UNLINK in batches. Other applications' keys in the same database survive. "
        "--flush empties the whole database instead (cache.clear())."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        which = parser.add_mutually_exclusive_group()
        which.add_argument(
            "--cache", action="append", metavar="ALIAS", help="alias to clear (repeatable)"
        )
        which.add_argument("--all-caches", action="store_true", help="every alias in CACHES")
        parser.add_argument(
            "--function",
            action="append",
            metavar="DOTTED",
            help="invalidate_all() of this cache_aside function only (repeatable)",
        )
        parser.add_argument("--pattern", metavar="GLOB", help="only keys matching GLOB")
        parser.add_argument(
            "--dry-run", action="store_true", help="count what would be deleted; delete nothing"
        )
        parser.add_argument(
            "--flush",
            action="store_true",
            help="cache.clear() on the alias: FLUSHDB on Redis, other applications' keys too",
        )
        parser.add_argument("--noinput", action="store_true", help="do not ask to confirm --flush")

    def handle(self, **options: Any) -> None:
        if options["function"]:
            self._invalidate_functions(options["function"], options["dry_run"])
            return
        if options["all_caches"]:
            aliases = list(settings.CACHES)
        else:
            aliases = options["cache"] or [conf.default_alias()]
        unknown = [alias for alias in aliases if alias not in settings.CACHES]
        if unknown:
            raise CommandError(
                f"unknown cache alias {', '.join(unknown)}; CACHES has {', '.join(settings.CACHES)}"
            )
        for alias in aliases:
            try:
                if options["flush"]:
                    self._flush(alias, options)
                else:
                    self._clear(alias, options)
            except BackendUnavailable as exc:
                raise CommandError(str(exc)) from exc

    def _invalidate_functions(self, paths: list[str], dry_run: bool) -> None:
        for path in paths:
            try:
                function = import_string(path)
            except ImportError as exc:
                raise CommandError(f"cannot import {path}: {exc}") from exc
            if not isinstance(function, CachedFunction):
                raise CommandError(f"{path} is not a cache_aside function")
            if dry_run:
                self.stdout.write(f"would invalidate every entry of {path}")
                continue
            try:
                function.invalidate_all()
            except BackendUnavailable as exc:
                raise CommandError(str(exc)) from exc
            self.stdout.write(f"invalidated every entry of {path}")

    def _clear(self, alias: str, options: dict[str, Any]) -> None:
        backend = get_backend(alias)
        if isinstance(backend, CacheAPIBackend):
            self._bump_namespace(alias, backend, options)
            return
        pattern = backend.namespace_pattern(options["pattern"] or "*")
        started = time.monotonic()
        report = backend.delete_matching(
            pattern, dry_run=options["dry_run"], progress=self._progress()
        )
        seconds = time.monotonic() - started
        if options["dry_run"]:
            self.stdout.write(f"{alias}: would delete {report.matched} keys matching {pattern}")
        else:
            self.stdout.write(f"{alias}: deleted {report.deleted} keys in {seconds:.2f}s")

    def _bump_namespace(
        self, alias: str, backend: CacheAPIBackend, options: dict[str, Any]
    ) -> None:
        if options["pattern"]:
            raise CommandError(f"{alias}: this cache cannot list its keys, so --pattern is refused")
        if options["dry_run"]:
            self.stdout.write(f"{alias}: would bump the cache_tools namespace generation")
            return
        generation = backend.bump_namespace()
        self.stdout.write(
            f"{alias}: cannot list keys; bumped the cache_tools namespace generation to "
            f"{generation}: every entry written through cache_tools is now unreachable "
            "(other keys are untouched; --flush clears everything)"
        )

    def _flush(self, alias: str, options: dict[str, Any]) -> None:
        backend = get_backend(alias)
        total = own = None
        if not isinstance(backend, CacheAPIBackend):
            total = backend.count_all()
            own = backend.delete_matching(backend.namespace_pattern(), dry_run=True).matched
        if total is not None and own is not None:
            summary = (
                f"{alias}: --flush deletes {total} keys, {total - own} outside {alias}'s namespace"
            )
        else:
            summary = f"{alias}: --flush deletes every entry of the cache"
        if options["dry_run"]:
            self.stdout.write(summary)
            return
        if not options["noinput"]:
            answer = input(f"{summary}. Type 'yes' to continue: ")
            if answer.strip().lower() != "yes":
                raise CommandError("flush cancelled")
        started = time.monotonic()
        backend.cache.clear()
        self.stdout.write(f"{alias}: flushed in {time.monotonic() - started:.2f}s")

    def _progress(self) -> Any:
        if not self.stdout.isatty():
            return None

        def show(report: ScanReport) -> None:
            self.stdout.write(f"\r{report.matched} keys...", ending="")
            self.stdout.flush()

        return show
