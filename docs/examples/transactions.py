"""Inside database transactions: a lock held until COMMIT, an invalidation repeated at COMMIT,
and a value computed by a transaction that has written kept to its caller."""

from django.contrib.auth.models import Group
from django.db import transaction

from cache_tools import cache_aside, lock


@cache_aside(timeout=300, key_maker=lambda name: ("group", name))
def group_members(name):
    return Group.objects.get(name=name).user_set.count()


Group.objects.create(name="editors")
assert group_members("editors") == 0

# A lock released inside atomic() is held until the COMMIT (the watchdog keeps it alive):
# the next holder, in any process, sees what this one wrote.
with transaction.atomic():
    with lock("groups:editors", timeout=30) as handle:
        Group.objects.filter(name="editors").update(name="editors")  # stands for a write
    assert handle.held  # still: the transaction has not committed yet
assert not handle.held  # released by the COMMIT

# An invalidation inside atomic() is made at once and again at the COMMIT; a value computed
# after the transaction wrote is the caller's alone (not stored: it may roll back).
with transaction.atomic():
    Group.objects.filter(name="editors").update(name="editors")
    group_members.invalidate("editors")
    assert group_members("editors") == 0
    assert not group_members.is_cached("editors")
assert group_members("editors") == 0 and group_members.is_cached("editors")
