"""Locking recipes: per-argument locks, one global lock, fencing tokens."""

from cache_tools import LockTimeout, current_lock, lock, lock_decorator

THINGS = {}


@lock_decorator(timeout=30)
def fetch_remote_thing(name):
    """Fetch-then-create: two workers asking for the same name never both fetch it."""
    if name not in THINGS:
        THINGS[name] = f"fetched {name}"  # stands for a slow remote call and an INSERT
    return THINGS[name]


assert fetch_remote_thing("x") == "fetched x"
assert not fetch_remote_thing.is_locked("x")


@lock_decorator(key_maker=lambda request, part: "api_stats_calculations", blocking_timeout=10)
def api_stats_calculations(request, part):
    """One expensive calculation at a time across every worker, whatever the arguments."""
    return f"stats for {part}"


assert api_stats_calculations(None, "sales") == "stats for sales"


@lock_decorator(key_maker="report:{name}", blocking_timeout=0, on_timeout="skip")
def nightly_report(name):
    """Skipped (returns None) if another process is already producing it."""
    return f"report {name}"


assert nightly_report("daily") == "report daily"

# Fencing: the store rejects writes from a holder whose lock was taken over meanwhile.
STORE = {"fence": 0, "report": None}


def save_report(report, fence):
    if fence <= STORE["fence"]:
        raise RuntimeError("stale lock holder: write refused")
    STORE.update(fence=fence, report=report)


@lock_decorator(key_maker="monthly-report")
def write_monthly_report():
    save_report("numbers", current_lock().fence)


write_monthly_report()
write_monthly_report()  # a later holder has a greater fence

try:
    with lock("busy", timeout=5), lock("busy", timeout=5):
        pass
except Exception as exc:  # re-entering a lock you hold fails at once
    assert "already held" in str(exc)

try:
    with lock("elsewhere", blocking_timeout=0):
        pass
except LockTimeout:
    raise AssertionError("nobody else holds it") from None
