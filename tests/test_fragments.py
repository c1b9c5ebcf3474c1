"""``{% load cache_tools %}{% cache %}``: Django's own tests of its ``{% cache %}`` tag (from
``tests/template_tests/syntax_tests/test_cache.py``), run against ours unchanged but for the
``{% load %}``; then what ours adds: single flight across processes, stale-while-revalidate,
``invalidate_fragment``, tags and models.

Where ours differs from Django's, by design: entries live under cache_tools's namespaced keys,
so ``cache.delete(make_template_fragment_key(...))`` does not drop one (``invalidate_fragment``
does); a timeout of 0 or less renders without storing (Django stores and expires at once)."""

from __future__ import annotations

import time

import pytest
import redis
from django.conf import settings
from django.core.cache import caches
from django.template import Context, Engine, TemplateSyntaxError
from django.test import override_settings

from cache_tools import invalidate_tags
from cache_tools.fragments import invalidate_fragment
from cache_tools.testing.contract import run_processes
from testproject.shop.models import Category, Product

LIBRARIES = {
    "cache_tools": "cache_tools.templatetags.cache_tools",
    "custom": "tests.fragment_libraries.custom",
}


@pytest.fixture
def engine(unique):
    # A namespace of its own per test: Django's tests reuse fragment names ("test").
    with override_settings(CACHE_TOOLS={**settings.CACHE_TOOLS, "NAMESPACE": f"f{unique}"}):
        yield Engine(libraries=LIBRARIES)


def render(engine, source, context=None):
    return engine.from_string(source).render(Context(context or {}))


# Django's tests ---------------------------------------------------------------------------------

CACHE03 = "{% load cache_tools %}{% cache 2 test %}cache03{% endcache %}"
CACHE04 = "{% load cache_tools %}{% cache 2 test %}cache04{% endcache %}"
CACHE05 = "{% load cache_tools %}{% cache 2 test foo %}cache05{% endcache %}"
CACHE06 = "{% load cache_tools %}{% cache 2 test foo %}cache06{% endcache %}"
CACHE07 = "{% load cache_tools %}{% cache 2 test foo %}cache07{% endcache %}"
CACHE08 = "{% load cache_tools %}{% cache time test foo %}cache08{% endcache %}"


def test_cache03(engine):
    assert render(engine, CACHE03) == "cache03"


def test_cache04(engine):
    render(engine, CACHE03)
    assert render(engine, CACHE04) == "cache03"


def test_cache05(engine):
    assert render(engine, CACHE05, {"foo": 1}) == "cache05"


def test_cache06(engine):
    assert render(engine, CACHE06, {"foo": 2}) == "cache06"


def test_cache07(engine):
    render(engine, CACHE05, {"foo": 1})
    assert render(engine, CACHE07, {"foo": 1}) == "cache05"


def test_cache08(engine):
    """Allow first argument to be a variable."""
    render(engine, CACHE06, {"foo": 2, "time": 2})
    assert render(engine, CACHE08, {"foo": 2, "time": 2}) == "cache06"


@pytest.mark.parametrize(
    "source",
    [
        "{% load cache_tools %}{% cache %}{% endcache %}",
        "{% load cache_tools %}{% cache 1 %}{% endcache %}",
    ],
    ids=["cache11", "cache12"],
)
def test_at_least_two_arguments(engine, source):
    with pytest.raises(TemplateSyntaxError):
        engine.from_string(source)


@pytest.mark.parametrize(
    "context", [{}, {"foo": "fail"}, {"foo": []}], ids=["cache13", "cache14", "cache15"]
)
def test_the_timeout_must_be_an_integer(engine, context):
    with pytest.raises(TemplateSyntaxError):
        render(engine, "{% load cache_tools %}{% cache foo bar %}{% endcache %}", context)


def test_cache16(engine):
    """Regression test for #7460."""
    source = "{% load cache_tools %}{% cache 1 foo bar %}{% endcache %}"
    assert render(engine, source, {"foo": "foo", "bar": "with spaces"}) == ""


def test_cache17(engine):
    """Regression test for #11270."""
    source = "{% load cache_tools %}{% cache 10 long_cache_key poem %}Some Content{% endcache %}"
    poem = (
        "Oh freddled gruntbuggly/Thy micturations are to me/As plurdled gabbleblotchits/"
        "On a lurgid bee/That mordiously hath bitled out/Its earted jurtles/"
        "Into a rancid festering/Or else I shall rend thee in the gobberwarts"
        "with my blurglecruncheon/See if I dont."
    )
    assert render(engine, source, {"poem": poem}) == "Some Content"


def test_cache18(engine):
    """Test whitespace in filter arguments."""
    source = '{% load cache_tools custom %}{% cache 2|noop:"x y" cache18 %}cache18{% endcache %}'
    assert render(engine, source) == "cache18"


def test_cache_regression_20130(engine):
    t = engine.from_string("{% load cache_tools %}{% cache 1 regression_20130 %}foo{% endcache %}")
    assert t.nodelist[1].fragment_name == "regression_20130"


def test_cache_fragment_cache(engine):
    """When a cache called "template_fragments" is present, the cache tag will use it in
    preference to 'default'."""
    fragments = {**settings.CACHES, "template_fragments": dict(settings.CACHES["django"])}
    with override_settings(CACHES=fragments):
        first = render(engine, "{% load cache_tools %}{% cache 1 fragment %}foo{% endcache %}")
        second = render(
            engine,
            '{% load cache_tools %}{% cache 1 fragment using="default" %}bar{% endcache %}',
        )
    assert (first, second) == ("foo", "bar")


def test_cache_missing_backend(engine):
    """When a cache that doesn't exist is specified, the cache tag will raise a
    TemplateSyntaxError."""
    source = '{% load cache_tools %}{% cache 1 backend using="unknown" %}bar{% endcache %}'
    with pytest.raises(TemplateSyntaxError):
        render(engine, source)


# What ours adds ---------------------------------------------------------------------------------


def counter():
    return redis.Redis.from_url(settings.REDIS_URL)


class Slow:
    """What the fragment renders: counts its renders on the server, and takes 200 ms."""

    def __init__(self, name):
        self.name = name

    def __str__(self):
        counter().incr(f"{settings.TEST_PREFIX}:renders:{self.name}")
        time.sleep(0.2)
        return f"rendered {self.name}"


def render_cold(index, barrier, namespace, name):
    import threading

    with override_settings(CACHE_TOOLS={**settings.CACHE_TOOLS, "NAMESPACE": namespace}):
        engine = Engine(libraries=LIBRARIES)
        source = "{% load cache_tools %}{% cache 60 herd name %}{{ slow }}{% endcache %}"
        results = []

        def one():
            results.append(render(engine, source, {"name": name, "slow": Slow(name)}))

        threads = [threading.Thread(target=one) for _ in range(4)]
        barrier.wait()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return results


def test_16_cold_renders_in_4_processes_render_once(unique):
    results = run_processes(4, render_cold, f"f{unique}", unique)
    assert [html for batch in results for html in batch] == [f"rendered {unique}"] * 16
    assert int(counter().get(f"{settings.TEST_PREFIX}:renders:{unique}")) == 1  # Django's: 16


def test_a_stale_fragment_is_served_while_one_caller_renders_it_again(engine, unique):
    source = "{% load cache_tools %}{% cache 1 news stale=60 %}{{ n }}{% endcache %}"
    assert render(engine, source, {"n": 1}) == "1"
    deadline = time.monotonic() + 5
    while render(engine, source, {"n": 2}) == "1":  # until the entry is stale, it is a hit
        assert time.monotonic() < deadline
    # The caller that found it stale rendered it again with its own context; others see that.
    assert render(engine, source, {"n": 3}) == "2"


def test_invalidate_fragment_drops_one_variant(engine, unique):
    source = "{% load cache_tools %}{% cache 60 card pk lang %}{{ n }}{% endcache %}"
    render(engine, source, {"pk": 1, "lang": "en", "n": "one"})
    render(engine, source, {"pk": 2, "lang": "en", "n": "two"})
    assert invalidate_fragment("card", [1, "en"]) is True
    assert invalidate_fragment("card", [1, "en"]) is False
    assert render(engine, source, {"pk": 1, "lang": "en", "n": "new"}) == "new"
    assert render(engine, source, {"pk": 2, "lang": "en", "n": "new"}) == "two"


def test_a_zero_timeout_renders_every_time(engine):
    source = "{% load cache_tools %}{% cache 0 never %}{{ n }}{% endcache %}"
    assert [render(engine, source, {"n": n}) for n in (1, 2)] == ["1", "2"]


def test_the_same_vary_on_values_share_an_entry_as_in_djangos_tag(engine):
    """Django hashes str() of each value: 1 and "1" share a fragment."""
    source = "{% load cache_tools %}{% cache 60 same v %}{{ n }}{% endcache %}"
    assert render(engine, source, {"v": 1, "n": "a"}) == "a"
    assert render(engine, source, {"v": "1", "n": "b"}) == "a"


def test_tags_invalidate_fragments(engine, unique):
    source = "{% load cache_tools %}{% cache 60 tagged pk tags=tag %}{{ n }}{% endcache %}"
    assert render(engine, source, {"pk": 1, "tag": f"{unique}:1", "n": "a"}) == "a"
    assert render(engine, source, {"pk": 1, "tag": f"{unique}:1", "n": "b"}) == "a"
    invalidate_tags(f"{unique}:1")
    assert render(engine, source, {"pk": 1, "tag": f"{unique}:1", "n": "c"}) == "c"


@pytest.mark.django_db(transaction=True)
def test_a_fragment_depending_on_a_model_follows_its_writes(engine, unique):
    source = (
        '{% load cache_tools %}{% cache 60 prices depends_on="shop.Product" %}{{ n }}{% endcache %}'
    )
    assert render(engine, source, {"n": "a"}) == "a"
    assert render(engine, source, {"n": "b"}) == "a"
    Product.objects.create(name=unique, price=1)
    assert render(engine, source, {"n": "c"}) == "c"


def test_bad_options_name_what_was_wrong(engine):
    with pytest.raises(TemplateSyntaxError, match="non-integer stale"):
        render(engine, '{% load cache_tools %}{% cache 1 x stale="soon" %}{% endcache %}')
    with pytest.raises(TemplateSyntaxError, match="depends_on"):
        render(
            engine, '{% load cache_tools %}{% cache 1 x depends_on="shop.Nothing" %}{% endcache %}'
        )
    with pytest.raises(TemplateSyntaxError, match="using= twice"):
        engine.from_string(
            '{% load cache_tools %}{% cache 1 x using="a" using="b" %}{% endcache %}'
        )


def test_the_fragment_cache_of_djangos_tag_is_not_ours(engine):
    caches["default"].set("template.cache.plain.d41d8cd98f00b204e9800998ecf8427e", "django's")
    assert render(engine, "{% load cache_tools %}{% cache 60 plain %}ours{% endcache %}") == "ours"


@pytest.mark.django_db(transaction=True)
def test_fragments_in_the_template_fragments_alias_follow_their_tags_and_models(engine, unique):
    """Their tags live where the fragment does, not in the default alias."""
    fragments = {**settings.CACHES, "template_fragments": dict(settings.CACHES["django"])}
    with override_settings(CACHES=fragments):
        source = (
            '{% load cache_tools %}{% cache 60 elsewhere tags=tag depends_on="shop.Category" %}'
            "{{ n }}{% endcache %}"
        )
        context = {"tag": f"{unique}:t"}
        assert render(engine, source, {**context, "n": "a"}) == "a"
        invalidate_tags(f"{unique}:t")
        assert render(engine, source, {**context, "n": "b"}) == "b"
        Category.objects.create(name=unique)
        assert render(engine, source, {**context, "n": "c"}) == "c"
