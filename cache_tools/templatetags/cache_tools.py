"""``{% load cache_tools %}``: ``{% cache %}`` with single flight across processes and
stale-while-revalidate, a drop-in for Django's own tag; and where the dashboard is mounted.

.. code-block:: html+django

    {% load cache_tools %}
    {% cache 500 sidebar request.user.username %} ... {% endcache %}
    {% cache 500 sidebar request.user.username stale=60 using="fragments" %} ... {% endcache %}
    {% cache 600 product product.pk tags=product_tags depends_on="shop.Review" %} ... {% endcache %}
"""

from __future__ import annotations

from typing import Any

from django import template
from django.apps import apps
from django.core.exceptions import ImproperlyConfigured
from django.template import Context, Node, NodeList, TemplateSyntaxError, VariableDoesNotExist
from django.template.base import FilterExpression, Parser, Token
from django.urls import NoReverseMatch, reverse

from ..dependencies import Dependencies
from ..fragments import fragment_alias, render_fragment

register = template.Library()

#: The options a ``{% cache %}`` tag takes after its ``vary_on`` values, in any order.
OPTIONS = ("using", "stale", "tags", "depends_on")
#: The models fragments depend on, per list of labels and alias (as many as templates name).
_dependencies: dict[tuple[tuple[str, ...], str], Dependencies] = {}


@register.simple_tag
def cache_tools_dashboard_url() -> str:
    """The dashboard's URL, or "" when ``cache_tools.urls`` is not included."""
    try:
        return reverse("cache_tools:dashboard")
    except NoReverseMatch:
        return ""


class CacheNode(Node):
    """One ``{% cache %}`` block: the attributes of Django's ``CacheNode`` (``nodelist``,
    ``expire_time_var``, ``fragment_name``, ``vary_on``, ``cache_name``), plus ours."""

    def __init__(
        self,
        nodelist: NodeList,
        expire_time_var: FilterExpression,
        fragment_name: str,
        vary_on: list[FilterExpression],
        options: dict[str, FilterExpression],
    ) -> None:
        self.nodelist, self.expire_time_var = nodelist, expire_time_var
        self.fragment_name, self.vary_on = fragment_name, vary_on
        self.cache_name = options.get("using")
        self.options = options

    def _resolve(self, expression: FilterExpression, context: Context) -> Any:
        try:
            return expression.resolve(context)
        except VariableDoesNotExist:
            raise TemplateSyntaxError(
                f'"cache" tag got an unknown variable: {expression.var!r}'
            ) from None

    def _seconds(self, name: str, value: Any, none_ok: bool) -> float | None:
        if value is None and none_ok:
            return None
        try:
            return int(value)
        except (ValueError, TypeError):
            raise TemplateSyntaxError(
                f'"cache" tag got a non-integer {name} value: {value!r}'
            ) from None

    def render(self, context: Context) -> str:
        timeout = self._seconds("timeout", self._resolve(self.expire_time_var, context), True)
        options = {name: self._resolve(value, context) for name, value in self.options.items()}
        using = options.get("using")
        try:
            alias = fragment_alias(using)
        except ImproperlyConfigured:
            raise TemplateSyntaxError(
                f"Invalid cache name specified for cache tag: {using!r}"
            ) from None
        stale = self._seconds("stale", options.get("stale", 0), False) or 0
        vary_on = [var.resolve(context) for var in self.vary_on]
        return render_fragment(
            self.fragment_name,
            vary_on,
            lambda: self.nodelist.render(context),
            timeout=timeout,
            using=using,
            stale=stale,
            tags=self._tags(options, alias),
        )

    def _tags(self, options: dict[str, Any], alias: str) -> list[str]:
        """``tags=``, and those of ``depends_on=`` (whose writes invalidate in ``alias``, where
        the fragment lives)."""
        tags = options.get("tags") or []
        found = [tags] if isinstance(tags, str) else list(tags)
        labels = options.get("depends_on")
        if labels:
            labels = (labels,) if isinstance(labels, str) else tuple(labels)
            dependencies = _dependencies.get((labels, alias))
            if dependencies is None:
                try:
                    models = [apps.get_model(label) for label in labels]
                except (LookupError, ValueError) as exc:
                    raise TemplateSyntaxError(f'"cache" tag depends_on: {exc}') from None
                dependencies = _dependencies[labels, alias] = Dependencies(models, alias)
            found += dependencies.tags
        return found


@register.tag("cache")
def do_cache(parser: Parser, token: Token) -> CacheNode:
    """Cache a template fragment, as Django's ``{% cache %}`` does, across processes with
    single flight::

        {% cache expire_time fragment_name [var1 var2 ...] [stale=N] [tags=...]
                 [depends_on="app.Model"] [using="cachename"] %} ... {% endcache %}
    """
    nodelist = parser.parse(("endcache",))
    parser.delete_first_token()
    tokens = token.split_contents()
    if len(tokens) < 3:
        raise TemplateSyntaxError(f"'{tokens[0]}' tag requires at least 2 arguments.")
    options: dict[str, FilterExpression] = {}
    while len(tokens) > 3 and tokens[-1].partition("=")[0] in OPTIONS and "=" in tokens[-1]:
        name, _, value = tokens.pop().partition("=")
        if name in options:
            raise TemplateSyntaxError(f"'{tokens[0]}' tag got {name}= twice")
        options[name] = parser.compile_filter(value)
    return CacheNode(
        nodelist,
        parser.compile_filter(tokens[1]),
        tokens[2],  # the fragment name is not a variable (as in Django's tag)
        [parser.compile_filter(t) for t in tokens[3:]],
        options,
    )
