import datetime
import decimal
import enum
import pickle
import re
import subprocess
import sys
import uuid

import pytest
from django.test import RequestFactory
from hypothesis import given, settings
from hypothesis import strategies as st

from cache_tools.keys import MAX_LENGTH, make_key, normalise, safe_key
from testproject.demo.models import Thing


class Colour(enum.Enum):
    RED = 1
    BLUE = "blue"


class Point:
    def __init__(self, x, y):
        self.x, self.y = x, y

    def __cache_key__(self):
        return (self.x, self.y)


def sample(value):
    """The function whose keys the properties check."""


def with_defaults(a, b=2, *rest, c=3, **extra):
    pass


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(),
    st.binary(),
    st.decimals(allow_nan=False, allow_infinity=False),
    st.uuids(),
    st.dates(),
    st.times(),
    st.datetimes(timezones=st.none() | st.timezones()),
    st.sampled_from(Colour),
)
values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.tuples(children, children),
        st.dictionaries(st.text(max_size=5) | st.integers(), children, max_size=4),
        st.frozensets(st.integers() | st.text(max_size=5), max_size=4),
    ),
    max_leaves=8,
)

SAFE_KEY = re.compile(r"^[!-~]+$")


def assert_safe(key):
    assert len(key) <= MAX_LENGTH
    assert SAFE_KEY.match(key), key
    assert "{" not in key and "}" not in key
    assert key.count("#") == 0 or re.search(r"#[0-9a-f]{32}$", key)


@given(values)
@settings(max_examples=300, deadline=None)
def test_keys_are_safe_for_every_backend(value):
    assert_safe(make_key(sample, (value,), {}))


@given(values, values)
@settings(max_examples=300, deadline=None)
def test_equal_keys_only_for_equal_arguments(a, b):
    if make_key(sample, (a,), {}) == make_key(sample, (b,), {}):
        assert a == b or normalise(a) == normalise(b)
        assert pickle.dumps(type(a)) == pickle.dumps(type(b))


@given(st.text(), st.text())
def test_distinct_strings_give_distinct_keys_even_when_hashed(a, b):
    long_a, long_b = "x" * 300 + a, "x" * 300 + b
    if a != b:
        assert make_key(sample, (long_a,), {}) != make_key(sample, (long_b,), {})
        assert make_key(sample, (a,), {}, "t:{value}") != make_key(sample, (b,), {}, "t:{value}")


@given(st.integers(), st.integers(), st.integers())
def test_equivalent_call_forms_share_a_key(a, b, c):
    forms = [
        ((a, b), {"c": c}),
        ((a,), {"b": b, "c": c}),
        ((), {"a": a, "b": b, "c": c}),
    ]
    keys = {make_key(with_defaults, args, kwargs) for args, kwargs in forms}
    assert len(keys) == 1
    assert make_key(with_defaults, (a,), {}) == make_key(with_defaults, (a, 2), {"c": 3})


def test_keys_are_identical_in_another_interpreter():
    samples = []

    @given(values)
    @settings(max_examples=200, deadline=None, database=None)
    def collect(value):
        samples.append(value)

    collect()
    expected = [make_key(sample, (value,), {}) for value in samples]
    script = (
        "import django, pickle, sys; django.setup();"
        "from cache_tools.keys import make_key; from tests.test_keys import sample;"
        "values = pickle.load(sys.stdin.buffer);"
        "sys.stdout.buffer.write(pickle.dumps([make_key(sample, (v,), {}) for v in values]))"
    )
    env = {"DJANGO_SETTINGS_MODULE": "tests.settings", "PYTHONHASHSEED": "12345"}
    result = subprocess.run(
        [sys.executable, "-c", script],
        input=pickle.dumps(samples),
        capture_output=True,
        env={**__import__("os").environ, **env},
        check=True,
    )
    assert pickle.loads(result.stdout) == expected


def test_default_key_is_readable():
    assert make_key(with_defaults, (1,), {}) == (
        "tests.test_keys.with_defaults:a=i1,b=i2,rest=U[],c=i3,extra=M[]"
    )
    assert make_key(with_defaults, (1, 2, 9), {"z": "q"}).endswith("rest=U[i9],c=i3,extra=M[sz=sq]")


def test_type_tags_keep_equal_looking_values_apart():
    keys = {make_key(sample, (v,), {}) for v in (1, "1", 1.0, True, b"1", [1], (1,), None, "N")}
    assert len(keys) == 9


def test_values_are_normalised():
    tz = datetime.timezone(datetime.timedelta(hours=2))
    instant = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
    assert normalise(instant) == normalise(instant.astimezone(tz)) == "D2026-01-02T03:04:05+00:00"
    assert normalise({"b": 1, "a": 2}) == normalise({"a": 2, "b": 1})
    assert normalise({3, 1, 2}) == "S[i1,i2,i3]"
    assert normalise(decimal.Decimal("1.50")) == normalise(decimal.Decimal("1.5"))
    assert normalise(uuid.UUID(int=5)) == "u00000000-0000-0000-0000-000000000005"
    assert normalise(Colour.RED) == "etests.test_keys.Colour.RED"
    assert normalise(Point(1, "a")) == "otests.test_keys.Point(U[i1,sa])"
    assert normalise(Thing(pk=7)) == "mdemo.thing:i7"
    assert normalise(Thing) == "ctestproject.demo.models.Thing"


def test_request_key_ignores_query_order():
    factory = RequestFactory()
    a = factory.get("/r/", {"x": "1", "y": "2"})
    b = factory.get("/r/?y=2&x=1")
    assert normalise(a) == normalise(b)
    assert normalise(a) != normalise(factory.get("/r/?x=1&y=3"))
    assert normalise(a) != normalise(factory.post("/r/?x=1&y=2"))


def test_unsupported_values_name_the_parameter():
    with pytest.raises(TypeError, match=r"'value' of type builtins.object"):
        make_key(sample, (object(),), {})
    with pytest.raises(TypeError, match=r"unsaved Thing in 'value'"):
        make_key(sample, (Thing(name="x"),), {})


def test_bad_calls_are_reported():
    with pytest.raises(TypeError, match="sample"):
        make_key(sample, (1, 2), {})
    with pytest.raises(ValueError, match="cannot be filled"):
        make_key(sample, (1,), {}, "x:{missing}")
    with pytest.raises(TypeError, match="expected str, bytes, int"):
        make_key(sample, (1,), {}, lambda value: 1.5)
    with pytest.raises(TypeError, match="key_maker must be"):
        make_key(sample, (1,), {}, 42)


def test_templates_escape_substituted_values():
    class User:
        pk = 7

    class Req:
        user = User()

    def stats(request, part):
        pass

    key = make_key(stats, (Req(), "a:b"), {}, "stats:{request.user.pk}:{part}")
    assert key == "stats:7:a%3Ab"
    # A value cannot forge the separators of another argument layout.
    assert make_key(stats, (Req(), "x:y"), {}, "s:{part}") != make_key(
        stats, (Req(), "x"), {}, "s:{part}:y"
    )
    assert_safe(make_key(stats, (Req(), "{evil} #tag\n"), {}, "s:{part}"))


def test_callable_key_makers():
    def view(request, part):
        pass

    assert make_key(view, (None, "p"), {}, lambda request, part: "api_stats") == "api_stats"
    assert make_key(view, (None, "a:b"), {}, lambda request, part: ("s", part, 3, b"\x01")) == (
        "s:a%3Ab:3:01"
    )


def test_safe_key_hashes_long_or_unsafe_keys():
    assert safe_key("ok:key") == "ok:key"
    long = safe_key("k" * 500)
    assert len(long) == MAX_LENGTH and long.startswith("k" * 100)
    assert safe_key("a b") != safe_key("a_b")
    assert safe_key("a{b}") != safe_key("a_b_")


def plain(a, b=2, c="x", *, d=None):
    """A signature the fast binder handles."""


@given(
    st.lists(st.integers(), max_size=4),
    st.dictionaries(st.sampled_from(["a", "b", "c", "d", "e"]), st.integers(), max_size=4),
)
@settings(max_examples=300, deadline=None)
def test_fast_binding_agrees_with_inspect(args, kwargs):
    import inspect

    from cache_tools.keys import _bind

    try:
        expected = inspect.signature(plain).bind(*args, **kwargs)
    except TypeError:
        with pytest.raises(TypeError, match=r"^plain\(\): "):
            _bind(plain, tuple(args), kwargs)
        return
    expected.apply_defaults()
    bound = _bind(plain, tuple(args), kwargs)
    assert list(bound.items()) == list(expected.arguments.items())


@given(
    literals=st.lists(st.text(alphabet=st.characters(blacklist_characters="{}")), min_size=3),
    a=values,
    b=values,
)
@settings(max_examples=200)
def test_compiled_templates_fill_as_string_formatter_does(literals, a, b):
    """Plain-name templates are filled without string.Formatter on the hit path: the keys
    are exactly those the formatter gives (doubled braces and repeated fields included)."""
    from cache_tools.keys import _fill, _TemplateFormatter

    template = f"{literals[0]}{{a}}{literals[1]}{{b}}{literals[2]}{{{{x}}}}{{a}}"
    arguments = {"a": a, "b": b}
    assert _fill(template, arguments) == _TemplateFormatter().vformat(template, (), arguments)
