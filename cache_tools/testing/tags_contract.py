"""The contract's tests of tags (:func:`cache_tools.invalidate_tags`), run by every adapter
through :class:`cache_tools.testing.contract.BackendContract`."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from .. import cache_aside, invalidate_tags, stats
from ..backends import get_backend
from .processes import run_processes

__all__ = ["TagsContract"]


class TagsContract:
    """Tags invalidate every entry carrying them, in every process, and only those."""

    def test_a_tag_invalidates_every_entry_carrying_it_and_nothing_else(
        self, contract_alias: str, name: str
    ) -> None:
        calls: list[str] = []

        @cache_aside(timeout=60, cache=contract_alias, tags=lambda n: [f"{name}:{n}", name])
        def page(n: int) -> str:
            calls.append(f"page {n}")
            return f"page {n}"

        @cache_aside(timeout=60, cache=contract_alias, tags=lambda n: [f"{name}:{n}"])
        def summary(n: int) -> str:
            calls.append(f"summary {n}")
            return f"summary {n}"

        @cache_aside(timeout=60, cache=contract_alias, key_maker=lambda: name)
        def untagged() -> str:
            calls.append("untagged")
            return "untagged"

        calls_made: list[Callable[[], str]] = [
            lambda: page(1),
            lambda: page(2),
            lambda: summary(1),
            untagged,
        ]
        for call in calls_made:
            call(), call()
        assert len(calls) == 4
        invalidate_tags(f"{name}:1", cache=contract_alias)  # page 1 and summary 1 only
        assert not page.is_cached(1) and not summary.is_cached(1)
        assert page.is_cached(2) and untagged.is_cached()
        page(1), summary(1), page(2), untagged()
        assert calls[4:] == ["page 1", "summary 1"]
        invalidate_tags(name, cache=contract_alias)  # shared by both pages
        assert not page.is_cached(1) and not page.is_cached(2) and summary.is_cached(1)
        assert stats.read_tags(get_backend(contract_alias).alias).get(name) == 1

    def test_a_tag_the_server_forgot_voids_its_entries(
        self, contract_alias: str, name: str
    ) -> None:
        """Expiry or eviction of a tag's version: it starts again above every value it had,
        so no entry made under the old one matches."""

        @cache_aside(timeout=60, cache=contract_alias, tags=lambda: [name])
        def tagged() -> float:
            return time.time()

        first = tagged()
        assert tagged() == first
        backend = get_backend(contract_alias)
        function = tagged.flight.function_id
        for key in backend.tag_keys([name], [function]):
            backend.delete(key)
        assert not tagged.is_cached() and tagged() != first

    def test_a_tag_invalidated_during_a_computation_voids_its_store(
        self, contract_alias: str, name: str
    ) -> None:
        @cache_aside(timeout=60, cache=contract_alias, tags=lambda: [name])
        def racing() -> str:
            invalidate_tags(name, cache=contract_alias)  # a write while this one computes
            return "computed from data that changed meanwhile"

        racing()
        assert not racing.is_cached()

    def test_tags_are_seen_by_every_process(self, contract_alias: str, name: str) -> None:
        @cache_aside(timeout=60, cache=contract_alias, tags=lambda n: [f"{name}:{n}"])
        def shared(n: int) -> float:
            return time.time()

        before = shared(1)

        def worker(index: int, barrier: Any) -> bool:
            barrier.wait()
            if index == 0:
                invalidate_tags(f"{name}:1", cache=contract_alias)
            return True

        run_processes(2, worker)
        assert shared(1) != before
