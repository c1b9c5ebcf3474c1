"""A progress bar on a terminal; plain lines (readable logs) otherwise; silent at -v 0."""

from __future__ import annotations

from typing import Any


class Progress:
    def __init__(self, stream: Any, total: int, verbosity: int = 1, width: int = 30) -> None:
        self.stream, self.total, self.width, self.done = stream, total, width, 0
        self.quiet = verbosity < 1
        self.tty = bool(getattr(stream, "isatty", lambda: False)())

    def advance(self, label: str, count: int = 1) -> None:
        self.done += count
        if self.tty and self.total and not self.quiet:
            filled = int(self.width * self.done / self.total)
            bar = "#" * filled + "-" * (self.width - filled)
            self.stream.write(f"\r[{bar}] {self.done}/{self.total} {label}", ending="")
            self.stream.flush()

    def line(self, text: str) -> None:
        """A line for logs; on a terminal the bar says it already."""
        if not self.tty and not self.quiet:
            self.stream.write(text)

    def finish(self) -> None:
        if self.tty and self.total and not self.quiet:
            self.stream.write("")
