"""``manage.py cache_stats``: the dashboard's tables in a terminal, or as JSON."""

from __future__ import annotations

import json
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from cache_tools import monitor

from ._common import backend_of, command_errors

_CLEAR = "\x1b[H\x1b[2J"  # cursor home, clear screen (only on a terminal)
#: Longest name a table shows (``--json`` keeps names whole).
LONGEST_NAME = 80


def printable(name: str, longest: int = LONGEST_NAME) -> str:
    r"""``name`` as a terminal may show it: control characters and invisible formatting
    (newlines, ANSI escapes, bidirectional overrides) escaped, cut to ``longest`` characters.

    >>> printable("report\n\x1b[31mok")
    'report\\n\\x1b[31mok'
    """
    shown = "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in name)
    return shown if len(shown) <= longest else shown[: longest - 3] + "..."


class Command(BaseCommand):
    help = (
        "Show every cached function and view (hits, misses, stale and local hits, "
        "computations, errors, hit ratio, summed over all processes), the locks in use and "
        "the tags invalidated."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--json", action="store_true", help="print JSON keyed by the functions' dotted paths"
        )
        parser.add_argument("--watch", action="store_true", help="refresh until interrupted")
        parser.add_argument(
            "--interval", type=float, default=2.0, help="seconds between refreshes (default 2)"
        )
        parser.add_argument(
            "--count", type=int, help="with --watch: stop after this many refreshes"
        )
        parser.add_argument("--cache", metavar="ALIAS", help="only this cache alias")

    def handle(self, **options: Any) -> None:
        if options["interval"] <= 0:
            raise CommandError(f"--interval must be a positive number, not {options['interval']}")
        if options["count"] is not None and options["count"] < 1:
            raise CommandError(f"--count must be 1 or more, not {options['count']}")
        if options["count"] is not None and not options["watch"]:
            raise CommandError("--count goes with --watch")
        alias = options["cache"] and backend_of(options["cache"]).alias
        terminal = self.stdout.isatty()
        shown = 0
        try:
            while True:
                with command_errors():
                    text = self._render(options["json"], alias)
                if options["watch"] and terminal and not options["json"]:
                    text = _CLEAR + text
                self.stdout.write(text)
                shown += 1
                if not options["watch"] or shown == options["count"]:
                    return
                time.sleep(options["interval"])
        except KeyboardInterrupt:
            return  # Ctrl-C ends --watch; no traceback

    def _render(self, as_json: bool, alias: str | None) -> str:
        functions = [row for row in monitor.functions() if alias in (None, row.alias)]
        locks = [row for row in monitor.locks() if alias in (None, row.alias)]
        tags = [row for row in monitor.tags() if alias in (None, row.alias)]
        if as_json:
            return json.dumps(
                {
                    "functions": {
                        row.function: {k: v for k, v in row.as_dict().items() if k != "per_minute"}
                        for row in functions
                    },
                    "locks": [row.as_dict() for row in locks],
                    "tags": [row.as_dict() for row in tags],
                },
                indent=2,
                sort_keys=True,
            )
        lines = [*_function_table(functions), "", *_lock_table(locks)]
        if tags:
            lines += ["", *_tag_table(tags)]
        return "\n".join(lines)


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows, strict=True)]
    lines = [header, *rows]
    return [
        "  ".join(
            cell.ljust(width) if index == 0 else cell.rjust(width)
            for index, (cell, width) in enumerate(zip(line, widths, strict=True))
        ).rstrip()
        for line in lines
    ]


def _function_table(rows: list[monitor.FunctionFigures]) -> list[str]:
    if not rows:
        return ["No cached function has been called yet."]
    header = [
        "function",
        "cache",
        "hits",
        "misses",
        "stale",
        "local",
        "computed",
        "errors",
        "ratio",
    ]
    body = []
    for row in rows:
        info, ratio = row.info, row.hit_ratio
        body.append(
            [
                printable(row.function) + (" (view)" if row.kind == "view" else ""),
                printable(row.alias),
                *(str(n) for n in (info.hits, info.misses, info.stale_hits, info.local_hits)),
                str(info.computations),
                str(info.errors),
                "-" if ratio is None else f"{ratio:.1%}",
            ]
        )
    return _table(header, body)


def _tag_table(rows: list[monitor.TagFigures]) -> list[str]:
    body = [[printable(row.name), printable(row.alias), str(row.invalidated)] for row in rows]
    return _table(["tag", "cache", "invalidated"], body)


def _lock_table(rows: list[monitor.LockFigures]) -> list[str]:
    if not rows:
        return ["No lock has been taken yet."]
    header = [
        "lock",
        "cache",
        "state",
        "holder",
        "held for",
        "fence",
        "waiters",
        "acquired",
        "waited",
        "lost",
    ]
    body = []
    for row in rows:
        state = row.state
        body.append(
            [
                printable(row.name),
                printable(row.alias),
                "held" if state.held else "free",
                printable(state.holder or "-"),
                "-" if state.age is None else f"{state.age:.1f}s",
                "-" if state.fence is None else str(state.fence),
                "?" if state.waiters is None else str(state.waiters),
                str(row.info.acquired),
                str(row.info.waited),
                str(row.info.lost),
            ]
        )
    return _table(header, body)
