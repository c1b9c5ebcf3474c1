"""The three key_maker forms, and the guarantees of make_key."""

from cache_tools.keys import make_key


def area(width, height=1):
    return width * height


# None: the function's dotted path and the bound arguments, defaults applied.
key = make_key(area, (3,), {})
assert key.endswith("area:width=i3,height=i1")
assert key == make_key(area, (), {"width": 3}) == make_key(area, (3, 1), {})
assert make_key(area, ("3",), {}) != key  # the str "3" is not the int 3

# A template: attribute access allowed, values escaped.
assert make_key(area, (3,), {}, "area:{width}x{height}") == "area:3x1"
assert make_key(area, ("a:b c",), {}, "area:{width}") == "area:a%3Ab%20c"

# A callable with the function's signature.
assert make_key(area, (3,), {}, lambda width, height=1: "all-areas") == "all-areas"
assert make_key(area, (3,), {}, lambda width, height=1: ("area", width)) == "area:3"

# Long or unsafe keys keep a readable prefix and end in a digest.
long_key = make_key(area, ("x" * 500,), {})
assert len(long_key) == 200 and "#" in long_key
