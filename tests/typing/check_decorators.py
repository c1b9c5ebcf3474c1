"""Checked by mypy (``make lint``), never run: the decorators keep the decorated function's
parameters and return type, and their controls take the same arguments. A call that must be
rejected carries a ``type: ignore`` with its error code; mypy's ``warn_unused_ignores`` (on in
strict mode) fails the check if the call was accepted after all."""

from typing import assert_type

from django.http import HttpRequest, HttpResponse

from cache_tools import CacheInfo, cache_aside, cache_view, lock_decorator, update


@cache_aside(timeout=60)
def price(item: str, quantity: int = 1) -> float:
    return 1.5 * quantity


assert_type(price("tea"), float)
assert_type(price("tea", quantity=2), float)
assert_type(price.invalidate("tea"), bool)
assert_type(price.refresh("tea", 3), float)
assert_type(price.is_cached("tea"), bool)
assert_type(price.cache_key("tea"), str)
assert_type(price.cache_info(), CacheInfo)
price(3)  # type: ignore[arg-type]
price.invalidate("tea", "three")  # type: ignore[arg-type]
price("tea", colour="red")  # type: ignore[call-arg]


@cache_aside
def bare(x: int) -> list[int]:
    return [x]


assert_type(bare(1), list[int])


class Account:
    def __cache_key__(self) -> int:
        return 1

    @cache_aside(timeout=60)
    def balance(self, currency: str) -> int:
        return 0


assert_type(Account().balance("EUR"), int)
assert_type(Account().balance.invalidate("EUR"), bool)
Account().balance(1)  # type: ignore[arg-type]


@lock_decorator(timeout=10)
def fetch(name: str) -> bytes:
    return b""


assert_type(fetch("x"), bytes)
assert_type(fetch.lock_key("x"), str)
assert_type(fetch.is_locked("x"), bool)
fetch(1)  # type: ignore[arg-type]


@lock_decorator(blocking_timeout=0, on_timeout="skip")
def maybe(name: str) -> bytes:
    return b""


assert_type(maybe("x"), bytes | None)


@lock_decorator
def bare_locked(n: int) -> int:
    return n


assert_type(bare_locked(1), int)


@cache_view(timeout=60)
def page(request: HttpRequest, slug: str) -> HttpResponse:
    return HttpResponse(slug)


assert_type(page.invalidate("/x/"), bool)
page(HttpRequest(), 3)  # type: ignore[arg-type]


def add_one(old: int | None) -> int:
    return (old or 0) + 1


assert_type(update("counter", add_one), int)
update("counter", add_one, timeout="soon")  # type: ignore[arg-type]
