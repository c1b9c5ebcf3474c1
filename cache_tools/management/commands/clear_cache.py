"""``manage.py clear_cache``: delete only the keys that belong to an alias."""

from __future__ import annotations

import sys
import time
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from cache_tools import conf, stats
from cache_tools.backends.base import Backend, ScanReport

from ._common import backend_of, check_aliases, command_errors, import_object

# Options that each make a deletion mean something else; any two of them together would
# silently widen or ignore what was asked.
_EXCLUSIVE = (
    ("flush", "pattern", "--flush empties the whole cache; it cannot keep to --pattern"),
    ("flush", "function", "--flush empties the whole cache; --function clears one function"),
    ("function", "pattern", "--function clears every entry of a function; it takes no --pattern"),
    ("function", "cache", "--function clears the function in its own alias; drop --cache"),
    ("function", "all_caches", "--function clears the function in its own alias"),
    ("cache", "all_caches", "--cache and --all-caches cannot be combined"),
)


def _glob_problem(pattern: str) -> str | None:
    """Why ``pattern`` is not a usable glob (Redis ``MATCH`` syntax), or None."""
    if pattern == "":
        return "--pattern '' matches nothing useful; pass '*' to mean every key"
    depth, escaped = 0, False
    for char in pattern:
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == "[":
            depth += 1
        elif char == "]" and depth:
            depth -= 1
    if depth or escaped:
        return f"--pattern {pattern!r} is not a valid glob (unclosed '[' or trailing '\\')"
    return None


class Command(BaseCommand):
    help = (
        "Delete the keys of a cache alias (its KEY_PREFIX and VERSION), found with SCAN and "
        "deleted with UNLINK in batches. Other applications' keys in the same database survive. "
        "Where keys cannot be listed (memcached, uWSGI, local caches), every entry written "
        "through cache_tools is made unreachable instead. --flush empties the whole cache "
        "(cache.clear())."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--cache", action="append", metavar="ALIAS", help="alias to clear (repeatable)"
        )
        parser.add_argument("--all-caches", action="store_true", help="every alias in CACHES")
        parser.add_argument(
            "--function",
            action="append",
            metavar="DOTTED",
            help="invalidate_all() of this cache_aside function only (repeatable); "
            "pkg.module.Class.method works for cached methods",
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
        self.verbosity = options["verbosity"]
        for first, second, reason in _EXCLUSIVE:
            if options[first] and options[second]:
                raise CommandError(reason)
        if options["pattern"] is not None:
            problem = _glob_problem(options["pattern"])
            if problem:
                raise CommandError(problem)
        if options["function"]:
            self._invalidate_functions(options["function"], options["dry_run"])
            return
        aliases = list(settings.CACHES) if options["all_caches"] else options["cache"]
        aliases = aliases or [conf.default_alias()]
        check_aliases(aliases)
        backends = [backend_of(alias) for alias in aliases]  # every alias usable, or nothing done
        if not options["dry_run"]:
            # This process's unsent counts would otherwise land after the deletion and leave
            # statistics keys behind (other processes' later counts are new writes).
            stats.flush()
        if options["pattern"] and not options["flush"]:
            unlisted = [b.alias for b in backends if b.stores and not b.can_list_keys]
            if unlisted:
                raise CommandError(
                    f"{', '.join(unlisted)}: cannot list keys, so --pattern cannot be honoured "
                    "there; nothing was deleted"
                )
        for backend in backends:
            with command_errors():
                if not backend.stores:
                    self._say(f"{backend.alias}: stores nothing (DummyCache); nothing to clear")
                elif options["flush"]:
                    self._flush(backend, options)
                elif backend.can_list_keys:
                    self._delete(backend, options)
                else:
                    self._bump_namespace(backend, options)

    def _say(self, text: str) -> None:
        if self.verbosity > 0:
            self.stdout.write(text)

    def _invalidate_functions(self, paths: list[str], dry_run: bool) -> None:
        functions = []
        for path in paths:
            function = import_object(path)
            if not callable(getattr(function, "invalidate_all", None)):
                raise CommandError(f"{path} is not a cache_aside function")
            functions.append((path, function))
        for path, function in functions:
            if dry_run:
                self._say(f"would invalidate every entry of {path}")
                continue
            with command_errors():
                function.invalidate_all()
            self._say(f"invalidated every entry of {path}")

    def _delete(self, backend: Backend, options: dict[str, Any]) -> None:
        pattern = backend.namespace_pattern(options["pattern"] or "*")
        started = time.monotonic()
        report = backend.delete_matching(
            pattern, dry_run=options["dry_run"], progress=self._progress()
        )
        seconds = time.monotonic() - started
        if options["dry_run"]:
            self._say(f"{backend.alias}: would delete {report.matched} keys matching {pattern}")
        else:
            self._say(f"{backend.alias}: deleted {report.deleted} keys in {seconds:.2f}s")

    def _bump_namespace(self, backend: Backend, options: dict[str, Any]) -> None:
        alias = backend.alias
        where = "" if backend.shared else " (in this process only: each process has its own copy)"
        if options["dry_run"]:
            self._say(f"{alias}: would make every cache_tools entry unreachable{where}")
            return
        backend.bump_namespace()
        self._say(
            f"{alias}: cannot list keys; made every entry written through cache_tools "
            f"unreachable{where} (other keys are untouched; --flush clears everything)"
        )

    def _flush(self, backend: Backend, options: dict[str, Any]) -> None:
        alias = backend.alias
        total = backend.count_all()
        if total is not None and backend.can_list_keys:
            own = backend.delete_matching(backend.namespace_pattern(), dry_run=True).matched
            summary = (
                f"{alias}: --flush deletes {total} keys, {total - own} outside {alias}'s namespace"
            )
        else:
            summary = f"{alias}: --flush deletes every entry of the cache"
            if backend.clear_is_global:
                summary += ", other applications' keys on the same server included"
        if options["dry_run"]:
            self._say(summary)
            return
        if not options["noinput"]:
            self._confirm(summary)
        started = time.monotonic()
        backend.flush()
        self._say(f"{alias}: flushed in {time.monotonic() - started:.2f}s")

    def _confirm(self, summary: str) -> None:
        if not sys.stdin.isatty():
            raise CommandError(f"{summary}; there is no terminal to confirm on: pass --noinput")
        try:
            answer = input(f"{summary}. Type 'yes' to continue: ")
        except EOFError:
            raise CommandError("flush cancelled (no answer)") from None
        if answer.strip().lower() != "yes":
            raise CommandError("flush cancelled")

    def _progress(self) -> Any:
        if self.verbosity < 1 or not self.stdout.isatty():
            return None

        def show(report: ScanReport) -> None:
            self.stdout.write(f"\r{report.matched} keys...", ending="")
            self.stdout.flush()

        return show
