"""``manage.py warm_cache``: pre-compute registered cache_aside entries through single flight."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from cache_tools import warmup
from cache_tools.aside import Call
from cache_tools.backends import resolve_alias
from cache_tools.warmup import Warmer

from ._progress import Progress


class Command(BaseCommand):
    help = (
        "Pre-compute the entries of registered cache warmers (@cache_aside(warm=...) and "
        "cache_warmers.py modules). Only missing entries are computed unless --force."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("names", nargs="*", metavar="NAME", help="warmer names or dotted paths")
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
        if options["jobs"] < 1:
            raise CommandError("--jobs must be 1 or more")
        selected = self._select(options["names"], options["cache"])
        if options["list"]:
            self._list(selected)
            return
        plans = [(warmer, warmer.argument_sets()) for warmer in selected]
        if options["dry_run"]:
            self._dry_run(plans, options["force"])
            return
        self._warm(plans, options)

    def _select(self, names: list[str], alias: str | None) -> list[Warmer]:
        registry = warmup.warmers()
        by_path = {
            f"{w.function.__module__}.{w.function.__qualname__}": w for w in registry.values()
        }
        unknown = [n for n in names if n not in registry and n not in by_path]
        if unknown:
            known = ", ".join(sorted(registry)) or "(none registered)"
            raise CommandError(f"unknown warmer {', '.join(unknown)}; known warmers: {known}")
        selected = [registry.get(n) or by_path[n] for n in names] or list(registry.values())
        if alias is not None:
            alias = resolve_alias(alias)
            selected = [w for w in selected if resolve_alias(w.function.flight.alias) == alias]
        return selected

    def _list(self, warmers: list[Warmer]) -> None:
        rows = [("NAME", "ARGUMENT SETS", "CACHED")]
        for warmer in warmers:
            calls = warmer.argument_sets()
            cached = sum(warmer.function.is_cached(*c.args, **c.kwargs) for c in calls)
            rows.append((warmer.name, str(len(calls)), str(cached)))
        widths = [max(len(row[i]) for row in rows) for i in range(3)]
        for row in rows:
            self.stdout.write(
                "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
            )

    def _dry_run(self, plans: list[tuple[Warmer, list[Call]]], force: bool) -> None:
        total = 0
        for warmer, calls in plans:
            for call in calls:
                if force or not warmer.function.is_cached(*call.args, **call.kwargs):
                    self.stdout.write(f"would compute {warmer.name} {call!r}")
                    total += 1
        self.stdout.write(f"{total} entries would be computed")

    def _warm(self, plans: list[tuple[Warmer, list[Call]]], options: dict[str, Any]) -> None:
        started = time.monotonic()
        computed = warm = 0
        failures: list[tuple[str, Call, BaseException]] = []
        progress = Progress(self.stdout, sum(len(calls) for _, calls in plans))
        with ThreadPoolExecutor(options["jobs"]) as pool:
            for warmer, calls in plans:
                if options["fail_fast"] and failures:
                    break
                futures = [
                    (call, pool.submit(warmer.function.warm_call, call, force=options["force"]))
                    for call in calls
                ]
                done = {"computed": 0, "warm": 0, "failed": 0}
                for call, future in futures:
                    try:
                        did_compute = future.result()
                    except Exception as exc:
                        failures.append((warmer.name, call, exc))
                        done["failed"] += 1
                        if options["fail_fast"]:
                            for _, other in futures:
                                other.cancel()
                            break
                    else:
                        done["computed" if did_compute else "warm"] += 1
                    progress.advance(warmer.name)
                computed += done["computed"]
                warm += done["warm"]
                progress.line(
                    f"{warmer.name}: {done['computed']} computed, {done['warm']} already warm, "
                    f"{done['failed']} failed"
                )
        progress.finish()
        if options["verbosity"] >= 2:
            for name, call, exc in failures:
                self.stderr.write(f"failed: {name} {call!r}: {type(exc).__name__}: {exc}")
        self.stdout.write(
            f"computed {computed}, already warm {warm}, failed {len(failures)}, "
            f"{time.monotonic() - started:.2f}s"
        )
        if failures:
            raise CommandError(f"{len(failures)} warm-up computations failed", returncode=1)
