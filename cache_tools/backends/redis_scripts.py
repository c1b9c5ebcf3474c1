"""The Redis adapter's Lua scripts: loaded from the ``.lua`` files beside this module, each
with what it uses of ``_common.lua``, and the nonce every reply echoes.

Each request carries a number of its own as the script's last argument, and the script's
reply echoes it (:data:`ECHO`): a reply is never taken for another request's (see
:mod:`cache_tools.backends._wire`).

>>> script, echo = get_script("lock_owner"), Echo()
>>> reply = client.evalsha(script.sha, 1, "ct:lock:{x}", echo.nonce)
>>> assert echo(reply)
>>> owner = echo.unwrap(reply)
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .._process import PerProcess
from .records import EntryKeys

__all__ = ["ECHO", "Echo", "Script", "envelope_check", "get_script", "milliseconds"]

_HERE = Path(__file__).parent
_DEFINED = re.compile(r"^local (?:function )?(\w+)", re.MULTILINE)


def _prelude(body: str) -> str:
    """The definitions of ``_common.lua`` that ``body`` uses, directly or through each other,
    in their order there: a script carries (and the server runs) only what it calls."""
    common = (_HERE / "_common.lua").read_text()
    parts = [(names, part) for part in common.split("\n\n") if (names := _DEFINED.findall(part))]
    used: set[int] = set()
    pending = [body]
    while pending:
        text = pending.pop()
        for index, (names, part) in enumerate(parts):
            if index not in used and any(re.search(rf"\b{name}\b", text) for name in names):
                used.add(index)
                pending.append(part)
    return "\n\n".join(part for index, (_, part) in enumerate(parts) if index in used)


#: What every script's reply is wrapped in: the request's nonce (the script's last argument).
#: A table gets the nonce as its first element; anything else travels as one string,
#: ``"<nonce>|"`` and a type (``i`` a whole number, ``s`` a string, ``n`` nothing) with the
#: value: a one-string reply costs redis-py's parser a third of what an array of two does
#: (about 12 us less per script without hiredis).
ECHO = """
local reply = script()
local nonce = ARGV[#ARGV]
if type(reply) == 'table' then
  table.insert(reply, 1, nonce)
  return reply
elseif type(reply) == 'number' then
  return nonce .. '|i' .. string.format('%d', reply)
elseif type(reply) == 'string' then
  return nonce .. '|s' .. reply
end
return nonce .. '|n'
"""


class Script:
    """One Lua script with what it uses of ``_common.lua`` prepended, run by EVALSHA with an
    EVAL fallback; its reply echoes the request's nonce (:data:`ECHO`, :class:`Echo`)."""

    def __init__(self, name: str) -> None:
        body = (_HERE / f"{name}.lua").read_text()
        self.source = f"{_prelude(body)}\n\nlocal function script()\n{body}\nend\n{ECHO}"
        self.sha = hashlib.sha1(self.source.encode()).hexdigest()


@functools.cache
def get_script(name: str) -> Script:
    """The script of ``<name>.lua``, made once per process."""
    return Script(name)


# Each request's own number, echoed by its script: per process, a fork child's anew.
_nonces: PerProcess[Iterator[int]] = PerProcess(itertools.count)


class Echo:
    """Checks that a script's reply echoes its request's nonce, and unwraps it."""

    __slots__ = ("head", "nonce")

    def __init__(self) -> None:
        nonce = self.nonce = b"%d" % next(_nonces.get())
        self.head = nonce + b"|"

    def __call__(self, reply: Any) -> bool:
        if type(reply) is bytes:
            return reply.startswith(self.head)
        return type(reply) is list and bool(reply) and reply[0] == self.nonce

    def unwrap(self, reply: Any) -> Any:
        """The script's own reply (checked already)."""
        if type(reply) is list:
            return reply[1:]
        start = len(self.head)
        kind, value = reply[start : start + 1], reply[start + 1 :]
        if kind == b"i":
            return int(value)
        return value if kind == b"s" else None


def envelope_check(keys: EntryKeys) -> Callable[[Any], bool]:
    """Checks that a hit read's reply is this entry's: its envelope names the entry's key
    (``ct3|<tag>|``, a digest of the key the store script wrote it under), or there is none.
    Made once per entry (kept on its keys)."""
    check = keys.read_check
    if check is None:
        head = b"ct3|" + _tag(keys.value) + b"|"
        check = keys.read_check = functools.partial(_entry_reply, head, 1 + len(keys.generations))
    return check  # type: ignore[no-any-return]


def _entry_reply(head: bytes, size: int, reply: Any) -> bool:
    return (
        type(reply) is list
        and len(reply) == size
        and (reply[0] is None or reply[0].startswith(head))
    )


def _tag(key: str) -> bytes:
    """What an envelope names its key by (aside_store.lua computes the same)."""
    return hashlib.sha1(key.encode()).hexdigest()[:8].encode()


def milliseconds(seconds: float) -> int:
    """``seconds`` as the scripts take them: whole milliseconds, at least 1."""
    return max(1, round(seconds * 1000))
