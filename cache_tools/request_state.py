"""What a page read of its request besides the headers it varies on: headers, cookies, session
keys and flash messages.

Middleware acts on these after a view returns, too late for a cache decorator to see: the
messages framework deletes the ``messages`` cookie of a visitor whose messages a page showed,
``SessionMiddleware`` adds ``Vary: Cookie`` for a session read. :func:`watch` records them while
:func:`~cache_tools.cache_view` renders a page (never on a hit), so that it can tell a page
built from one visitor's state from a page every visitor may share::

    watching = watch(request)
    try:
        response = view(request)
    finally:
        reads = watching.stop()
    reads.headers            # headers it read (request.headers, request.META), lower case
    reads.client             # REMOTE_ADDR, REMOTE_USER if it read them (request.META)
    reads.cookies            # names of the cookies the view read (request.COOKIES)
    reads.session_keys       # keys it read of request.session (None: it read it whole)
    reads.messages_shown     # it showed this visitor's own flash messages
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.http import HttpRequest
from django.http.request import HttpHeaders

__all__ = [
    "AUTHENTICATION_KEYS",
    "CLIENT_KEYS",
    "Reads",
    "Watching",
    "header_name",
    "pending_messages",
    "watch",
]

#: The session keys ``django.contrib.auth`` reads to find the user.
AUTHENTICATION_KEYS = frozenset({SESSION_KEY, BACKEND_SESSION_KEY, HASH_SESSION_KEY})

#: ``request.META`` keys besides headers whose values differ from client to client.
CLIENT_KEYS = frozenset({"REMOTE_ADDR", "REMOTE_USER"})


@dataclass
class Reads:
    """What one rendering of a page read of its request."""

    #: Names (lower case) of the request headers read from ``request.headers`` or
    #: ``request.META``; ``"*"`` when they were read all at once (iterated).
    headers: set[str] = field(default_factory=set)
    #: The ``request.META`` keys read that identify the client without being headers
    #: (:data:`CLIENT_KEYS`: the peer's address, the user the web server authenticated).
    client: set[str] = field(default_factory=set)
    #: Names of the cookies read from ``request.COOKIES`` (the messages cookie left out).
    cookies: set[str] = field(default_factory=set)
    #: Keys read from ``request.session`` (the messages key left out); None when it was read
    #: in a way that names no key (``items()``, ``is_empty()``, its private parts).
    session_keys: set[str] | None = field(default_factory=set)
    #: The page loaded the flash messages (``{% if messages %}``, ``{% for m in messages %}``).
    messages_read: bool = False
    #: ... and there were some: this visitor's own, or added by the view itself.
    messages_shown: bool = False

    def session_beyond(self, keys: frozenset[str]) -> bool:
        """Whether the page read the session for anything but ``keys``."""
        return self.session_keys is None or not self.session_keys <= keys


class _Recording(dict[str, Any]):
    """A request's dict that reports each read (``_read(key)`` for one key, ``_read_all()``
    for all of them) and passes it on to the dict it stands for, writes too. That dict may be
    another cache's watch (a cached view rendering another with its request): it hears every
    read as well. The copy kept here is for code that reads a dict's storage directly."""

    def __init__(self, source: dict[str, Any]) -> None:
        super().__init__(dict.items(source))  # the data, without reading a watched source
        self._source = source

    def _read(self, key: object) -> None:
        raise NotImplementedError

    def _read_all(self) -> None:
        raise NotImplementedError

    def __getitem__(self, key: str) -> Any:
        self._read(key)
        return self._source[key]

    def get(self, key: str, default: Any = None) -> Any:
        self._read(key)
        return self._source.get(key, default)

    def __contains__(self, key: object) -> bool:
        self._read(key)
        return key in self._source

    def __iter__(self) -> Iterator[str]:
        self._read_all()
        return iter(self._source)

    def __len__(self) -> int:
        return len(self._source)

    def keys(self) -> Any:
        self._read_all()
        return self._source.keys()

    def values(self) -> Any:
        self._read_all()
        return self._source.values()

    def items(self) -> Any:
        self._read_all()
        return self._source.items()

    def copy(self) -> dict[str, Any]:
        self._read_all()
        return dict(self._source.items())

    def __setitem__(self, key: str, value: Any) -> None:
        super().__setitem__(key, value)
        self._source[key] = value

    def __delitem__(self, key: str) -> None:
        super().__delitem__(key)
        del self._source[key]

    def setdefault(self, key: str, default: Any = None) -> Any:
        self._read(key)
        super().setdefault(key, default)
        return self._source.setdefault(key, default)

    def pop(self, key: str, *default: Any) -> Any:
        self._read(key)
        super().pop(key, None)
        return self._source.pop(key, *default)

    def update(self, *args: Any, **kwargs: Any) -> None:
        changes = dict(*args, **kwargs)
        super().update(changes)
        self._source.update(changes)


def header_name(meta_key: object) -> str | None:
    """The header a ``request.META`` key holds (``HTTP_ACCEPT_LANGUAGE``: ``accept-language``),
    None for the rest of the WSGI environment."""
    if not isinstance(meta_key, str):
        return None
    if meta_key.startswith("HTTP_"):
        meta_key = meta_key[5:]
    elif meta_key not in HttpHeaders.UNPREFIXED_HEADERS:
        return None
    return meta_key.replace("_", "-").lower()


class _Meta(_Recording):
    """``request.META`` that records which headers (and :data:`CLIENT_KEYS`) are read;
    writes (``get_token()``'s ``CSRF_COOKIE``) reach the request's own ``META``."""

    def __init__(self, meta: dict[str, Any], reads: Reads) -> None:
        super().__init__(meta)
        self._reads = reads

    def _read(self, key: object) -> None:
        name = header_name(key)
        if name is not None:
            self._reads.headers.add(name)
        elif key in CLIENT_KEYS:
            self._reads.client.add(str(key))

    def _read_all(self) -> None:
        self._reads.headers.add("*")


class _Headers(HttpHeaders):
    """``request.headers`` that records which headers are read, and passes each read on to
    the headers it stands for (another cache's watch hears it too)."""

    def __init__(self, headers: HttpHeaders, meta: dict[str, Any], reads: Reads) -> None:
        super().__init__(dict(dict.items(meta)))  # from the data, without reading a watch
        self._source, self._reads = headers, reads

    def __getitem__(self, key: str) -> str:
        self._reads.headers.add(key.lower())
        return self._source[key]

    def __iter__(self) -> Iterator[str]:
        self._reads.headers.add("*")
        return iter(self._source)


class _Cookies(_Recording):
    """``request.COOKIES`` that records which cookies are read."""

    def __init__(self, cookies: dict[str, str], reads: Reads, own: frozenset[str]) -> None:
        super().__init__(cookies)
        self._reads, self._own = reads, own

    def _read(self, name: object) -> None:
        if name not in self._own:
            self._reads.cookies.add(str(name))

    def _read_all(self) -> None:
        self._reads.cookies.add("*")

    def __len__(self) -> int:
        self._read_all()
        return super().__len__()


# Session methods that read one key (its first argument), and those that name none.
_READ_KEY = frozenset(
    {
        "__contains__",
        "__getitem__",
        "get",
        "aget",
        "pop",
        "apop",
        "setdefault",
        "asetdefault",
        "has_key",
        "ahas_key",
    }
)
# Session attributes that read none of its data: writes, its key, expiry and bookkeeping.
_READ_NOTHING = frozenset(
    {
        "__setitem__",
        "__delitem__",
        "aset",
        "update",
        "aupdate",
        "clear",
        "accessed",
        "modified",
        "session_key",
        "_session_key",
        "serializer",
        "key_salt",
        "set_expiry",
        "aset_expiry",
        "get_expiry_age",
        "aget_expiry_age",
        "get_expiry_date",
        "aget_expiry_date",
        "get_expire_at_browser_close",
        "aget_expire_at_browser_close",
        "get_session_cookie_age",
        "set_test_cookie",
        "aset_test_cookie",
        "delete_test_cookie",
        "adelete_test_cookie",
        "cycle_key",
        "acycle_key",
        "flush",
        "aflush",
        "save",
        "asave",
        "create",
        "acreate",
        "delete",
        "adelete",
        "exists",
        "aexists",
    }
)


class _Session:
    """``request.session`` that records which keys are read; everything else is the session's
    own (writes, ``cycle_key()`` on login, ``flush()`` on logout)."""

    def __init__(self, session: Any, reads: Reads, own: frozenset[str]) -> None:
        self.__dict__["_watched"] = (session, reads, own)

    def _read(self, key: Any) -> None:
        _, reads, own = self._watched
        if reads.session_keys is not None and key not in own:
            reads.session_keys.add(str(key))

    def __getattr__(self, name: str) -> Any:
        session, reads, _ = self._watched
        if name in _READ_KEY:
            method = getattr(session, name)

            def read_key(key: Any, *args: Any) -> Any:
                self._read(key)
                return method(key, *args)

            return read_key
        if name not in _READ_NOTHING:
            reads.session_keys = None
        return getattr(session, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._watched[0], name, value)

    def __contains__(self, key: object) -> bool:
        self._read(key)
        return key in self._watched[0]

    def __getitem__(self, key: str) -> Any:
        self._read(key)
        return self._watched[0][key]

    def __setitem__(self, key: str, value: Any) -> None:
        self._watched[0][key] = value

    def __delitem__(self, key: str) -> None:
        del self._watched[0][key]


def _messages_storages(request: HttpRequest) -> list[Any]:
    """The request's message storage and, for ``FallbackStorage``, those it falls back on."""
    storage = getattr(request, "_messages", None)
    if storage is None:
        return []
    return [storage, *getattr(storage, "storages", ())]


def _names(storages: list[Any], attribute: str) -> Iterator[str]:
    """The cookie names or session keys message storages keep messages under."""
    for storage in storages:
        name = getattr(storage, attribute, None)
        if isinstance(name, str):
            yield name


class Watching:
    """Records what the view reads of ``request`` until :meth:`stop`."""

    def __init__(self, request: HttpRequest) -> None:
        self.request, self.reads = request, Reads()
        storages = _messages_storages(request)
        self._messages = storages[0] if storages else None
        self._messages_loaded = hasattr(self._messages, "_loaded_data")
        own_cookies = frozenset(_names(storages, "cookie_name"))
        own_keys = frozenset(_names(storages, "session_key"))
        self._headers = request.headers  # made now from the request's own META, as Django does
        self._meta = request.META
        request.META = _Meta(self._meta, self.reads)
        request.headers = _Headers(self._headers, self._meta, self.reads)
        self._cookies = request.COOKIES
        request.COOKIES = _Cookies(self._cookies, self.reads, own_cookies)
        self._session = getattr(request, "session", None)
        if self._session is not None:
            request.session = _Session(self._session, self.reads, own_keys)  # type: ignore[assignment]

    def stop(self) -> Reads:
        """Put the request back as it was; what was read."""
        request, reads = self.request, self.reads
        request.META, request.headers = self._meta, self._headers
        request.COOKIES = self._cookies
        if self._session is not None:
            request.session = self._session
        storage = self._messages
        if storage is not None and not self._messages_loaded:
            reads.messages_read = hasattr(storage, "_loaded_data")
            reads.messages_shown = reads.messages_read and len(storage) > 0
        return reads


def watch(request: HttpRequest) -> Watching:
    """Start recording what is read of ``request`` (see :class:`Reads`)."""
    return Watching(request)


def pending_messages(request: HttpRequest) -> bool:
    """Whether flash messages wait for this visitor (loads them, as showing them would)."""
    storage = getattr(request, "_messages", None)
    return storage is not None and len(storage) > 0
