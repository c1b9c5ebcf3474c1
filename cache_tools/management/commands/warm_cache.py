"""``manage.py warm_cache``: pre-compute registered cache_aside entries through single flight."""

from __future__ import annotations

import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from cache_tools import warmup
from cache_tools.warmup import Call, Warmer

from ._common import backend_of, command_errors
from ._progress import Progress

Plans = list[tuple[Warmer, list[Call]]]


def _distinct(plans: Plans) -> tuple[Plans, int]:
    """Each entry once, kept by the first warmer (in running order) whose argument sets name
    it; and how many sets were left out."""
    seen: set[object] = set()
    kept: Plans = []
    for warmer, calls in plans:
        own = []
        for call in calls:
            key: object
            try:
                key = warmer.function.cache_key(*call.args, **call.kwargs)
            except (TypeError, ValueError):  # no key: warming it reports why
                key = object()
            if key not in seen:
                seen.add(key)
                own.append(call)
        kept.append((warmer, own))
    return kept, sum(len(calls) for _, calls in plans) - len(seen)


class Command(BaseCommand):
    help = (
        "Pre-compute the entries of registered cache warmers (@cache_aside(warm=...) and "
        "cache_warmers.py modules), in the order the names are given (default: the order "
        "they were registered), each entry once. Only missing entries are computed unless "
        "--force. Exits with status 1 if any computation failed or its result could not be "
        "stored."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "names", nargs="*", metavar="NAME", help="warmer names or dotted paths, in order"
        )
        parser.add_argument("--list", action="store_true", help="list warmers and exit")
        parser.add_argument(
            "--dry-run", action="store_true", help="show what would be computed; touch nothing"
        )
        parser.add_argument(
            "--force", action="store_true", help="recompute and replace every entry"
        )
        parser.add_argument("--jobs", type=int, default=1, help="threads computing (default 1)")
        parser.add_argument("--cache", metavar="ALIAS", help="only warmers using this alias")
        parser.add_argument("--fail-fast", action="store_true", help="stop at the first failure")

    def handle(self, **options: Any) -> None:
        self.verbosity = options["verbosity"]
        if options["jobs"] < 1:
            raise CommandError("--jobs must be 1 or more")
        selected = self._select(options["names"], options["cache"])
        with command_errors():
            if options["list"]:
                self._list(selected)
                return
            plans, repeated = _distinct([(w, w.argument_sets()) for w in selected])
            if repeated:
                self._say(f"{repeated} argument sets name an entry another set names; warmed once")
            if options["dry_run"]:
                self._dry_run(plans, options["force"])
                return
        self._warm(plans, options)

    def _say(self, text: str) -> None:
        if self.verbosity > 0:
            self.stdout.write(text)

    def _select(self, names: list[str], alias: str | None) -> list[Warmer]:
        if alias is not None:
            alias = backend_of(alias).alias
        registry = warmup.warmers()
        by_path = {w.path: w for w in registry.values()}
        unknown = [n for n in names if n not in registry and n not in by_path]
        if unknown:
            known = ", ".join(sorted(registry)) or "(none registered)"
            raise CommandError(f"unknown warmer {', '.join(unknown)}; known warmers: {known}")
        chosen = [registry.get(n) or by_path[n] for n in names] or list(registry.values())
        selected = list({w.name: w for w in chosen}.values())  # each once, where first named
        if alias is not None:
            selected = [w for w in selected if w.function.alias == alias]
        return selected

    def _list(self, warmers: list[Warmer]) -> None:
        rows = [("NAME", "ARGUMENT SETS", "CACHED")]
        for warmer in warmers:
            calls = warmer.argument_sets()
            cached = sum(warmer.function.is_cached(*c.args, **c.kwargs) for c in calls)
            rows.append((warmer.name, str(len(calls)), str(cached)))
        widths = [max(len(row[i]) for row in rows) for i in range(3)]
        for row in rows:
            self._say("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))

    def _dry_run(self, plans: Plans, force: bool) -> None:
        total = 0
        for warmer, calls in plans:
            for call in calls:
                if force or not warmer.function.is_cached(*call.args, **call.kwargs):
                    self._say(f"would compute {warmer.name} {call!r}")
                    total += 1
        self._say(f"{total} entries would be computed")

    def _warm(self, plans: Plans, options: dict[str, Any]) -> None:
        started = time.monotonic()
        totals: Counter[str] = Counter()
        failures: list[tuple[str, Call, BaseException]] = []
        progress = Progress(self.stdout, sum(len(calls) for _, calls in plans), self.verbosity)
        with ThreadPoolExecutor(options["jobs"]) as pool:
            for warmer, calls in plans:
                if options["fail_fast"] and (failures or totals["not stored"]):
                    break
                futures = [
                    (call, pool.submit(warmer.function.warm_call, call, force=options["force"]))
                    for call in calls
                ]
                done: Counter[str] = Counter()
                for call, future in futures:
                    try:
                        done[future.result()] += 1
                    except Exception as exc:
                        failures.append((warmer.name, call, exc))
                        done["failed"] += 1
                    if options["fail_fast"] and (done["failed"] or done["not stored"]):
                        for _, other in futures:
                            other.cancel()
                        break
                    progress.advance(warmer.name)
                totals.update(done)
                progress.line(
                    f"{warmer.name}: {done['computed']} computed, {done['warm']} already warm, "
                    f"{done['not stored']} not stored, {done['failed']} failed"
                )
        progress.finish()
        for name, call, error in failures:
            self.stderr.write(f"failed: {name} {call!r}: {type(error).__name__}: {error}")
        self._say(
            f"computed {totals['computed']}, already warm {totals['warm']}, not stored "
            f"{totals['not stored']}, failed {len(failures)}, {time.monotonic() - started:.2f}s"
        )
        problems = []
        if failures:
            problems.append(f"{len(failures)} warm-up computations failed")
        if totals["not stored"]:
            problems.append(
                f"{totals['not stored']} entries could not be stored (the cache was unreachable "
                "or refused them; see the warnings above)"
            )
        if problems:
            raise CommandError("; ".join(problems), returncode=1)
