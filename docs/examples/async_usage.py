"""Async: cache_aside, locks and aupdate on coroutines, sharing keys with the sync API."""

import asyncio

from cache_tools import aupdate, cache_aside, current_lock, lock, lock_decorator, update

COMPUTED = []


@cache_aside(timeout=300, stale=60)
async def get_profile(user_id: int) -> dict:
    COMPUTED.append(user_id)
    await asyncio.sleep(0.05)  # an awaited database or HTTP call
    return {"id": user_id, "name": f"user {user_id}"}


@lock_decorator(timeout=30)
async def import_feed(name: str) -> int:
    return current_lock().fence  # one import per name at a time, across every worker


async def main() -> None:
    # A hundred coroutines on a cold key: one computation (and one in the whole deployment).
    profiles = await asyncio.gather(*(get_profile(7) for _ in range(100)))
    assert profiles == [{"id": 7, "name": "user 7"}] * 100 and COMPUTED == [7]

    assert await get_profile.ainvalidate(7) is True
    await get_profile(7)
    assert COMPUTED == [7, 7] and (await get_profile.acache_info()).computations == 2

    async with lock("reports:monthly", timeout=30, blocking_timeout=5) as handle:
        assert handle.fence and current_lock() is handle

    assert await import_feed("prices") > 0
    assert await aupdate("docs:visits", lambda n: (n or 0) + 1, timeout=60) == 1


asyncio.run(main())
assert update("docs:visits", lambda n: n + 1) == 2  # the same key, from sync code
assert get_profile.is_cached(7)  # the sync controls work on async functions too
