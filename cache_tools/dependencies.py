"""Invalidation that follows the data: the models a cached function depends on.

``depends_on=[Product, Review]`` tags each entry with the models' tags; a committed write to
their tables invalidates them. ``depends_on={Product: lambda product: [f"product:{product.pk}"]}``
invalidates, for a write through an instance (``save``, ``delete``, an m2m change), only the
tags the function returns for it; a write without instances (``QuerySet.update()``,
``bulk_create`` ...) invalidates every entry of the function.

Writes are seen in two places. Signals (connected for the models depended on only: a
``pre_delete`` receiver would turn fast deletes slow) give the instance. Every write statement
run through Django's connections (an execute wrapper, as for transactions) gives the table:
``INSERT``/``UPDATE``/``DELETE`` on a model's table, an m2m through table (both sides), raw SQL
on the ORM's cursor whose table can be read from the statement. A statement a signalled
operation (save, delete, m2m change) runs is left to its signal, which knows the instance.
Inside a transaction, the tags written are invalidated once when it commits (not before, and
not at all on ROLLBACK); in autocommit, after each statement or signal.

>>> model_tag(Product)
'model:shop.product'
"""

from __future__ import annotations

import logging
import re
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from django.apps import apps
from django.db import models
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.signals import connection_created
from django.db.models.signals import m2m_changed, post_delete, post_save, pre_delete, pre_save

from . import conf, transactions
from .errors import BackendUnavailable
from .tags import entry_tags, invalidate_tags

__all__ = [
    "Dependencies",
    "connect_pending",
    "invalidate_model",
    "model_tag",
    "written_table",
]

InstanceTags = Callable[[Any], Iterable[str]]
#: What ``depends_on`` takes: models, or models with what a write through an instance voids.
DependsOn = Sequence[type[models.Model]] | Mapping[type[models.Model], InstanceTags]

logger = logging.getLogger("cache_tools.dependencies")

#: A signalled operation older than this no longer claims the statements on its tables (it
#: failed before its SQL): they count as writes without instances.
_OPERATION_SECONDS = 1.0

_WRITE = re.compile(
    r"""\s*(?:INSERT(?:\s+OR\s+\w+)?\s+INTO|REPLACE\s+INTO|UPDATE|DELETE\s+FROM|TRUNCATE(?:\s+TABLE)?)
        \s+(?:ONLY\s+)?[`"\[]?([\w.$]+?)[`"\]]?(?:\s|\(|$)""",
    re.IGNORECASE | re.VERBOSE,
)


def written_table(sql: object) -> str | None:
    """The table a statement writes to (lower case), or None for a statement that writes
    none, or whose table does not follow its verb.

    >>> written_table('UPDATE "shop_product" SET "price" = %s')
    'shop_product'
    """
    found = _WRITE.match(str(sql))
    return None if found is None else found.group(1).rsplit(".", 1)[-1].lower()


def model_tag(model: type[models.Model]) -> str:
    """The tag every write to ``model``'s table invalidates."""
    meta = model._meta.concrete_model._meta  # type: ignore[union-attr]
    return f"model:{meta.app_label}.{meta.model_name}"


def _bulk_tag(model: type[models.Model]) -> str:
    """The tag a write without instances to ``model``'s table invalidates (carried by the
    entries of functions that name the instances' tags)."""
    return f"{model_tag(model)}:bulk"


class _Registry:
    """What this process knows: per concrete model, the live functions' dependencies on it
    (held weakly: a function that is gone depends on nothing); per table, its models."""

    def __init__(self) -> None:
        self.guard = threading.Lock()
        self.dependents: dict[type[models.Model], weakref.WeakSet[Dependencies]] = {}
        self._tables: dict[str, set[type[models.Model]]] | None = None

    def add(self, dependencies: Dependencies) -> None:
        with self.guard:
            for model in dependencies.per_model:
                self.dependents.setdefault(model, weakref.WeakSet()).add(dependencies)
            self._tables = None

    def _of(self, model: type[models.Model]) -> list[Dependencies]:
        with self.guard:
            return list(self.dependents.get(model, ()))

    def aliases(self, changed: Iterable[type[models.Model]]) -> set[str | None]:
        """The aliases of the functions depending on the ``changed`` models."""
        return {dependency.alias for model in changed for dependency in self._of(model)}

    def instance_tags(self, model: type[models.Model]) -> list[InstanceTags]:
        """What a write through an instance of ``model`` voids, per function naming it."""
        found = (dependency.per_model[model] for dependency in self._of(model))
        return [tags for tags in found if tags is not None]

    def models_of(self, table: str) -> set[type[models.Model]]:
        """The models depended on that a write to ``table`` changes (an m2m through table
        changes both sides)."""
        tables = self._tables
        if tables is None:
            tables = {}
            with self.guard:
                watched = set(self.dependents)
            for model in apps.get_models(include_auto_created=True):
                changed: set[Any] = set(self.chain(model))
                if model._meta.auto_created:  # a through table: both sides change
                    changed |= {
                        field.related_model._meta.concrete_model
                        for field in model._meta.fields
                        if field.related_model is not None
                    }
                hit = changed & watched
                if hit:
                    tables.setdefault(model._meta.db_table.lower(), set()).update(hit)
            self._tables = tables
        return tables.get(table.lower(), set())

    @staticmethod
    def chain(model: type[models.Model]) -> list[type[models.Model]]:
        """``model``'s concrete model and its parents (multi-table inheritance)."""
        concrete: Any = model._meta.concrete_model
        return [concrete, *concrete._meta.get_parent_list()]

    def watched(self, model: type[models.Model]) -> list[type[models.Model]]:
        """``model`` and its parents, where something depends on them."""
        return [m for m in self.chain(model) if self._of(m)]


_registry = _Registry()


class _Pending(threading.local):
    """This thread's signalled operations (pre_* seen, post_* not yet)."""

    def __init__(self) -> None:
        self.operations: list[tuple[float, type[models.Model], set[str]]] = []


_pending = _Pending()


def _tables_of(model: type[models.Model]) -> set[str]:
    return {m._meta.db_table.lower() for m in _Registry.chain(model)}


def _begin(model: type[models.Model], tables: set[str]) -> None:
    now = time.monotonic()
    operations = _pending.operations
    operations[:] = [op for op in operations if now - op[0] < _OPERATION_SECONDS]
    operations.append((now, model, set(tables)))


def _claimed(table: str) -> bool:
    """Whether a signalled operation of this thread runs the statement on ``table``: the
    newest one claims each of its tables once."""
    now = time.monotonic()
    for index in range(len(_pending.operations) - 1, -1, -1):
        began, _, tables = _pending.operations[index]
        if now - began < _OPERATION_SECONDS and table in tables:
            tables.discard(table)
            return True
    return False


def _end(model: type[models.Model]) -> None:
    for index in range(len(_pending.operations) - 1, -1, -1):
        if _pending.operations[index][1] is model:
            del _pending.operations[index]
            return


def _written(tags: set[str], changed: Iterable[type[models.Model]], using: str) -> None:
    """Invalidate ``tags`` in the aliases of the functions depending on the ``changed``
    models: once at COMMIT inside a transaction, now in autocommit."""
    if not tags:
        return
    for alias in _registry.aliases(changed):
        if not transactions.collect_at_commit(using, _flush, tags, alias):
            _flush(tags, alias)


def _flush(tags: set[str], alias: str | None) -> None:
    """Invalidate ``tags`` in the alias of the functions that depend on the write (None: the
    default alias, not every alias). The write has happened: an unreachable cache is logged,
    never raised into the ``save()`` or ``update()`` that made it."""
    try:
        invalidate_tags(*sorted(tags), cache=alias or conf.default_alias())
    except BackendUnavailable as exc:
        logger.warning("could not invalidate %s after a write: %s", ", ".join(sorted(tags)), exc)


def _instance_written(model: type[models.Model], instance: Any, using: str) -> None:
    tags: set[str] = set()
    watched = _registry.watched(model)
    for depended in watched:
        tags.add(model_tag(depended))
        for instance_tags in _registry.instance_tags(depended):
            tags.update(entry_tags(instance_tags(instance), f"depends_on[{depended.__name__}]"))
    _written(tags, watched, using)


def _models_written(changed: Iterable[type[models.Model]], using: str) -> None:
    # Both tags, whether or not a function of this process names instance tags: one that only
    # another process imported still carries the bulk tag.
    changed = list(changed)
    tags = {tag for model in changed for tag in (model_tag(model), _bulk_tag(model))}
    _written(tags, changed, using)


# Signals -------------------------------------------------------------------------------------


def _pre_write(sender: type[models.Model], **kwargs: Any) -> None:
    _begin(sender, _tables_of(sender))


def _post_write(sender: type[models.Model], instance: Any, using: str, **kwargs: Any) -> None:
    _end(sender)
    _instance_written(sender, instance, using)


def _m2m_changed(
    sender: type[models.Model],
    instance: Any,
    action: str,
    model: type[models.Model],
    using: str,
    **kwargs: Any,
) -> None:
    if action.startswith("pre_"):
        _begin(sender, _tables_of(sender))
        return
    _end(sender)
    _instance_written(type(instance), instance, using)
    # The other side's instances are not loaded: a write without instances to it.
    _models_written(_registry.watched(model), using)


def _with_subclasses(model: type[models.Model]) -> list[type[models.Model]]:
    """``model`` and the models that inherit from it (proxies, child tables): their saves and
    deletes write its table (no app registry needed: decorators run at import)."""
    found, pending = [], [model]
    while pending:
        current = pending.pop()
        found.append(current)
        pending.extend(current.__subclasses__())
    return found


#: Models depended on before the app registry was ready (decorators run at import).
_unconnected: list[type[models.Model]] = []


def _connect(model: type[models.Model]) -> None:
    """Listen to the signals of writes through ``model``'s instances (and, once the app
    registry is ready, of its m2m relations)."""
    for sender in _with_subclasses(model):
        label = f"cache_tools.dependencies.{sender._meta.label}"  # once per sender
        pre_save.connect(_pre_write, sender=sender, dispatch_uid=label)
        post_save.connect(_post_write, sender=sender, dispatch_uid=label)
        pre_delete.connect(_pre_write, sender=sender, dispatch_uid=label)
        post_delete.connect(_post_write, sender=sender, dispatch_uid=label)
    if not apps.ready:
        _unconnected.append(model)
        return
    for field in model._meta.get_fields(include_hidden=True):
        if field.many_to_many:
            through = getattr(field, "through", None) or field.remote_field.through  # type: ignore[union-attr]
            uid = f"cache_tools.dependencies.m2m.{through._meta.label}"
            m2m_changed.connect(_m2m_changed, sender=through, dispatch_uid=uid)


def connect_pending() -> None:
    """Connect what was depended on before the app registry was ready (``AppConfig.ready``)."""
    while _unconnected:
        _connect(_unconnected.pop())


# Statements ----------------------------------------------------------------------------------


def _watch_statements(
    execute: Callable[..., Any], sql: Any, params: Any, many: bool, context: dict[str, Any]
) -> Any:
    """An execute wrapper: a write to a table of a model depended on invalidates its tags,
    unless a signalled operation runs it."""
    if not _registry.dependents:
        return execute(sql, params, many, context)
    table = written_table(sql)
    if table is None:
        return execute(sql, params, many, context)
    changed = _registry.models_of(table)
    if not changed or _claimed(table):
        return execute(sql, params, many, context)
    result = execute(sql, params, many, context)
    _models_written(changed, context["connection"].alias)
    return result


def _watch(sender: Any, connection: BaseDatabaseWrapper, **kwargs: Any) -> None:
    if _watch_statements not in connection.execute_wrappers:
        connection.execute_wrappers.append(_watch_statements)


connection_created.connect(_watch, dispatch_uid="cache_tools.dependencies")


# Declaring ----------------------------------------------------------------------------------


class Dependencies:
    """A cached function's ``depends_on`` (kept by the function: the registry holds it weakly).
    ``tags`` are those every entry of the function carries.

    >>> Dependencies([Product], alias=None).tags
    ('model:shop.product',)
    """

    def __init__(self, depends_on: DependsOn, alias: str | None) -> None:
        pairs: list[tuple[Any, InstanceTags | None]]
        if isinstance(depends_on, Mapping):
            pairs = list(depends_on.items())
        elif isinstance(depends_on, (list, tuple, set, frozenset)):
            pairs = [(model, None) for model in depends_on]
        else:
            raise TypeError(
                "depends_on must be a list of models or a dict {model: instance -> tags}, "
                f"not {depends_on!r}"
            )
        self.alias = alias
        self.per_model: dict[type[models.Model], InstanceTags | None] = {}
        tags: set[str] = set()
        for model, instance_tags in pairs:
            if not (isinstance(model, type) and issubclass(model, models.Model)):
                raise TypeError(f"depends_on names {model!r}, which is not a Django model")
            if instance_tags is not None and not callable(instance_tags):
                raise TypeError(
                    f"depends_on[{model.__name__}] must be a callable instance -> tags, "
                    f"not {instance_tags!r}"
                )
            concrete: Any = model._meta.concrete_model
            tags.add(_bulk_tag(concrete) if instance_tags else model_tag(concrete))
            self.per_model[concrete] = instance_tags
        self.tags = tuple(sorted(tags))
        _registry.add(self)
        for model in self.per_model:
            _connect(model)
        for connection in _open_connections():
            _watch(None, connection)


def _open_connections() -> list[BaseDatabaseWrapper]:
    from django.db import connections

    return list(connections.all(initialized_only=True))


def invalidate_model(model: type[models.Model], cache: str | None = None) -> None:
    """Invalidate every entry depending on ``model`` (for writes cache_tools cannot see:
    another program's, or raw SQL whose table it cannot read), as a write without instances
    does; inside a transaction, now and again at COMMIT.

    >>> invalidate_model(Product)
    """
    if not (isinstance(model, type) and issubclass(model, models.Model)):
        raise TypeError(f"invalidate_model() takes a Django model, not {model!r}")
    concrete = model._meta.concrete_model
    assert concrete is not None
    invalidate_tags(model_tag(concrete), _bulk_tag(concrete), cache=cache)
