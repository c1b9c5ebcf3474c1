"""Build cache and lock keys from a function and its arguments.

Every decorator in ``cache_tools`` builds its keys here. ``key_maker`` takes one of three forms:

``None``
    ``"<module>.<qualname>:"`` plus the bound arguments, defaults applied, so ``f(1)``,
    ``f(a=1)`` and ``f(1, b=2)`` (when ``b=2`` is the default) give one key::

        >>> def area(width, height=1): ...
        >>> make_key(area, (3,), {})
        'cache_tools.keys.area:width=i3,height=i1'

A template string
    Formatted with the bound arguments; attribute access works. Substituted values are
    escaped, so request data cannot forge separators or leave the template's namespace::

        >>> make_key(area, (3,), {}, "area:{width}x{height}")
        'area:3x1'
        >>> make_key(area, ("a:b c",), {}, "area:{width}")
        'area:a%3Ab%20c'

A callable
    Called with the function's arguments; returns ``str``, ``bytes``, ``int`` or a tuple of
    those (tuple parts are escaped and joined with ``:``)::

        >>> make_key(area, (3,), {}, lambda width, height=1: ("area", width))
        'area:3'

Values are normalised deterministically (never ``repr()`` or ``hash()``); an unsupported
value raises ``TypeError`` naming the parameter. Keys are at most 200 characters of printable
ASCII without ``{``, ``}`` or ``#``; anything longer or unsafe keeps a readable prefix and ends
in ``#`` and a blake2b digest of the full key, so distinct inputs keep distinct keys.
"""

from __future__ import annotations

import datetime
import decimal
import enum
import functools
import hashlib
import inspect
import re
import string
import uuid
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote

from django.db.models import Model
from django.http import HttpRequest

__all__ = [
    "MAX_LENGTH",
    "KeyMaker",
    "fit_length",
    "function_id",
    "make_key",
    "normalise",
    "raw_key",
    "safe_key",
]

MAX_LENGTH = 200
_DIGEST_CHARS = 32  # blake2b with digest_size=16, in hex

KeyPart = str | bytes | int
KeyMaker = None | str | Callable[..., KeyPart | tuple[KeyPart, ...]]

_UNSAFE = frozenset("{}#")
_SAFE_KEY = re.compile(r"[!-\"$-z|~]+")  # printable ASCII without "#", "{" and "}"


def _is_safe_char(char: str) -> bool:
    return 33 <= ord(char) <= 126 and char not in _UNSAFE


def _digest(key: str) -> str:
    return hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


def safe_key(key: str, max_length: int = MAX_LENGTH) -> str:
    """Return ``key`` if it is safe for every cache backend, else a digest-suffixed form of it.

    Safe keys never contain ``#``, and every digest-suffixed form does, so the two kinds never
    collide; applying ``safe_key`` to a result of ``safe_key`` changes it again, so call it
    exactly once per key.

    >>> safe_key("plain:key")
    'plain:key'
    >>> safe_key("has space")[:10]
    'has_space#'
    """
    if len(key) <= max_length and _SAFE_KEY.fullmatch(key):
        return key
    readable = "".join(
        c if _is_safe_char(c) else "_" for c in key[: max_length - _DIGEST_CHARS - 1]
    )
    return f"{readable}#{_digest(key)}"


def fit_length(key: str, max_length: int) -> str:
    """``key`` itself if it has at most ``max_length`` characters, else its start and a digest
    of the whole (for servers with a key length limit, such as memcached's 250 bytes).

    >>> len(fit_length("x" * 300, 100))
    100
    """
    if len(key) <= max_length:
        return key
    if max_length <= _DIGEST_CHARS:
        raise ValueError(
            f"no room for a key in {max_length} characters: shorten the cache's KEY_PREFIX "
            "or the CACHE_TOOLS namespace"
        )
    return f"{key[: max_length - _DIGEST_CHARS - 1]}#{_digest(key)}"


def _escape(text: str) -> str:
    return quote(text, safe="")


def _dotted(obj: Any) -> str:
    module = obj.__module__
    # multiprocessing's spawn children import the main script as __mp_main__: the same code.
    return f"{'__main__' if module == '__mp_main__' else module}.{obj.__qualname__}"


def _decimal(value: decimal.Decimal) -> str:
    """Exact text equal for equal decimals: ``1.50`` and ``1.5`` both give ``15E-1``."""
    if not value.is_finite():
        return str(value)
    sign, digits, exponent = value.as_tuple()
    kept = list(digits)
    while len(kept) > 1 and kept[-1] == 0:
        kept.pop()
        exponent += 1  # type: ignore[operator]
    if kept == [0]:
        return "0"
    return f"{'-' if sign else ''}{''.join(map(str, kept))}E{exponent}"


def normalise(value: Any, name: str = "value") -> str:
    """Return the canonical, type-tagged text of ``value`` used inside keys.

    ``name`` is the parameter the value came from; it is named in the ``TypeError`` raised
    for unsupported values.

    >>> normalise([1, "a", None])
    'L[i1,sa,N]'
    """
    if value is None:
        return "N"
    if value is True or value is False:
        return "T" if value else "F"
    if isinstance(value, enum.Enum):
        return f"e{_dotted(type(value))}.{value.name}"
    if isinstance(value, int):
        return f"i{int(value)}"
    if isinstance(value, float):
        return f"f{float(value)!r}"
    if isinstance(value, decimal.Decimal):
        return f"d{_decimal(value)}"
    if isinstance(value, str):
        return f"s{_escape(value)}"
    if isinstance(value, (bytes, bytearray, memoryview)):
        return f"b{bytes(value).hex()}"
    if isinstance(value, uuid.UUID):
        return f"u{value}"
    if isinstance(value, datetime.datetime):
        if value.tzinfo is not None and value.utcoffset() is not None:
            return f"D{value.astimezone(datetime.UTC).isoformat()}"
        return f"D{value.isoformat()}"
    if isinstance(value, datetime.date):
        return f"a{value.isoformat()}"
    if isinstance(value, datetime.time):
        return f"t{value.isoformat()}"
    if isinstance(value, list):
        return "L[" + ",".join(normalise(v, name) for v in value) + "]"
    if isinstance(value, tuple):
        return "U[" + ",".join(normalise(v, name) for v in value) + "]"
    if isinstance(value, (set, frozenset)):
        tag = "S" if isinstance(value, set) else "Z"
        return tag + "[" + ",".join(sorted(normalise(v, name) for v in value)) + "]"
    if isinstance(value, Mapping):
        items = sorted(f"{normalise(k, name)}={normalise(v, name)}" for k, v in value.items())
        return "M[" + ",".join(items) + "]"
    if isinstance(value, Model):
        if value.pk is None:
            raise TypeError(
                f"cannot build a cache key from unsaved {type(value).__name__} in {name!r}"
            )
        return f"m{value._meta.label_lower}:{normalise(value.pk, name)}"
    if isinstance(value, HttpRequest):
        query = sorted(value.GET.lists())
        return f"r{_escape(value.method or '')}:{_escape(value.path)}:{normalise(query, name)}"
    cache_key = getattr(value, "__cache_key__", None)
    if cache_key is not None and callable(cache_key) and not isinstance(value, type):
        return f"o{_dotted(type(value))}({normalise(cache_key(), name)})"
    if isinstance(value, type):
        return f"c{_dotted(value)}"
    raise TypeError(
        f"cannot build a cache key from {name!r} of type {_dotted(type(value))}: "
        "pass a supported value, give the class a __cache_key__() method, or use key_maker"
    )


_PLAIN = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
Binder = Callable[[tuple[Any, ...], dict[str, Any]], "dict[str, Any] | None"]


@functools.lru_cache(maxsize=4096)
def _binder(func: Callable[..., Any]) -> tuple[inspect.Signature, Binder | None]:
    """The function's signature, and a fast binder for the common case (no ``*args``,
    ``**kwargs`` or positional-only parameters) that returns None when it cannot bind."""
    signature = inspect.signature(func)
    parameters = list(signature.parameters.values())
    if any(p.kind not in _PLAIN for p in parameters):
        return signature, None
    names = [p.name for p in parameters]
    known = frozenset(names)
    positional = [p.name for p in parameters if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD]
    defaults = {p.name: p.default for p in parameters if p.default is not p.empty}

    def bind(args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any] | None:
        if len(args) > len(positional):
            return None
        arguments = dict(zip(positional, args, strict=False))
        if not kwargs and len(arguments) == len(names):
            return arguments  # already in signature order
        for name, value in kwargs.items():
            if name in arguments or name not in known:
                return None
            arguments[name] = value
        for name in names:
            if name not in arguments:
                if name not in defaults:
                    return None
                arguments[name] = defaults[name]
        return {name: arguments[name] for name in names}

    return signature, bind


def _bind(
    func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> dict[str, Any]:
    """The call's arguments by parameter name, defaults applied, in signature order."""
    signature, fast = _binder(func)
    if fast is not None:
        arguments = fast(args, kwargs)
        if arguments is not None:
            return arguments
    try:  # the general case, and the precise error for a call that does not bind
        bound = signature.bind(*args, **kwargs)
    except TypeError as exc:
        raise TypeError(f"{func.__qualname__}(): {exc}") from None
    bound.apply_defaults()
    return dict(bound.arguments)


class _TemplateFormatter(string.Formatter):
    def format_field(self, value: Any, format_spec: str) -> str:
        if format_spec:
            return _escape(format(value, format_spec))
        return _template_part(value)


_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@functools.lru_cache(maxsize=4096)
def _compiled(template: str) -> tuple[tuple[str, str | None], ...] | None:
    """``template`` as (literal, field name) pairs when every field is a plain name without a
    format spec or conversion (filled without ``string.Formatter``); None otherwise."""
    parts = []
    for literal, field, spec, conversion in string.Formatter().parse(template):
        if field is not None and (spec or conversion or not _FIELD.fullmatch(field)):
            return None
        parts.append((literal, field))
    return tuple(parts)


def _fill(template: str, arguments: dict[str, Any]) -> str:
    compiled = _compiled(template)
    if compiled is None:
        return _TemplateFormatter().vformat(template, (), arguments)
    out = []
    for literal, field in compiled:
        out.append(literal)
        if field is not None:
            out.append(_template_part(arguments[field]))
    return "".join(out)


def _template_part(value: Any) -> str:
    if isinstance(value, str):
        return _escape(value)
    if isinstance(value, int) and not isinstance(value, (bool, enum.Enum)):
        return str(value)
    return _escape(normalise(value))


def _from_key_maker_result(result: Any, func: Callable[..., Any]) -> str:
    if isinstance(result, tuple):
        if not result:
            raise TypeError(f"key_maker of {func.__qualname__} returned an empty tuple")
        return ":".join(_from_key_maker_part(part, func) for part in result)
    return _from_key_maker_part(result, func, verbatim=True)


def _from_key_maker_part(part: Any, func: Callable[..., Any], verbatim: bool = False) -> str:
    if isinstance(part, str):
        return part if verbatim else _escape(part)
    if isinstance(part, bytes):
        return part.hex()
    if isinstance(part, int) and not isinstance(part, bool):
        return str(part)
    raise TypeError(
        f"key_maker of {func.__qualname__} returned {type(part).__name__}; "
        "expected str, bytes, int or a tuple of them"
    )


def make_key(
    func: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    key_maker: KeyMaker = None,
    *,
    max_length: int = MAX_LENGTH,
    with_function: bool = True,
) -> str:
    """Return the key for calling ``func(*args, **kwargs)``, built as ``key_maker`` says.

    ``with_function=False`` leaves the function's dotted name out of the default key (for
    callers that already namespace keys by function). The result is :func:`raw_key` made safe
    by :func:`safe_key`.
    """
    return safe_key(raw_key(func, args, kwargs, key_maker, with_function=with_function), max_length)


def raw_key(
    func: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    key_maker: KeyMaker = None,
    *,
    with_function: bool = True,
) -> str:
    """The key of :func:`make_key` before :func:`safe_key`: for callers, such as locks, that
    make their names safe themselves (so that a name is made safe exactly once).

    >>> raw_key(area, (3,), {}, lambda width, height=1: "a b")
    'a b'
    """
    if key_maker is None:
        arguments = _bind(func, args, kwargs)
        parts = ",".join(f"{name}={normalise(value, name)}" for name, value in arguments.items())
        raw = f"{_dotted(func)}:{parts}" if with_function else f"({parts})"
    elif isinstance(key_maker, str):
        arguments = _bind(func, args, kwargs)
        try:
            raw = _fill(key_maker, arguments)
        except (KeyError, AttributeError, IndexError) as exc:
            raise ValueError(
                f"key template {key_maker!r} of {func.__qualname__} cannot be filled: {exc!r}"
            ) from exc
    elif callable(key_maker):
        raw = _from_key_maker_result(key_maker(*args, **kwargs), func)
    else:
        raise TypeError(
            "key_maker must be None, a template string or a callable, "
            f"not {type(key_maker).__name__}"
        )
    if not raw:
        raise ValueError(f"key_maker of {func.__qualname__} produced an empty key")
    return raw


def function_id(func: Callable[..., Any]) -> str:
    """The dotted path of ``func``, made safe and at most 60 characters. A class-based view
    (``ProductView.as_view(**options)``) is named after its class and the options it was given:
    every ``as_view()`` function has the same dotted path.

    >>> function_id(area)
    'cache_tools.keys.area'
    >>> function_id(ProductView.as_view())
    'shop.views.ProductView'
    """
    view_class = getattr(func, "view_class", None)
    if not isinstance(view_class, type):
        return safe_key(_dotted(func), 60)
    name = _dotted(view_class)
    options = getattr(func, "view_initkwargs", None)
    if options:
        name += ":" + ",".join(f"{k}={_option(v, k)}" for k, v in sorted(options.items()))
    return safe_key(name, 60)


def _option(value: Any, name: str) -> str:
    """A view option's text in a name: normalised, or its type when it cannot be."""
    try:
        return normalise(value, name)
    except TypeError:
        return f"?{_dotted(type(value))}"
