"""Template fragments: Django's {% cache %} syntax, with single flight across processes,
stale-while-revalidate, and invalidation by name, tags or models."""

from django.template import Context, Engine

from cache_tools import invalidate_fragment, invalidate_tags

engine = Engine(libraries={"cache_tools": "cache_tools.templatetags.cache_tools"})
sidebar = engine.from_string(
    "{% load cache_tools %}"
    "{% cache 600 sidebar user stale=60 tags=tags %}Hello {{ user }} ({{ n }}){% endcache %}"
)


def render(n, user="alice"):
    return sidebar.render(Context({"user": user, "n": n, "tags": ["sidebar"]}))


assert render(1) == "Hello alice (1)"
assert render(2) == "Hello alice (1)"  # cached: one render across every process
assert render(3, user="bob") == "Hello bob (3)"  # each vary_on value has its own entry

invalidate_fragment("sidebar", ["alice"])  # one variant, as Django's make_template_fragment_key
assert render(4) == "Hello alice (4)"

invalidate_tags("sidebar")  # every fragment tagged "sidebar"
assert render(5, user="bob") == "Hello bob (5)"
