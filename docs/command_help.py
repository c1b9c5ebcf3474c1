"""Write the commands' reference (``docs/_generated/<command>.txt``) from their own ``--help``,
or, with ``--check``, fail when a committed file no longer matches (CI runs the check, so the
reference on a code host is never blank or stale).

    python docs/command_help.py            # after changing a command's options
    python docs/command_help.py --check
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

COMMANDS = ("warm_cache", "clear_cache", "cache_stats")
GENERATED = Path(__file__).resolve().parent / "_generated"
WIDTH = "100"  # argparse wraps to the terminal's width: fixed, so the files do not depend on it


def help_text(name: str) -> str:
    """The command's own options (Django's standard ones, the same for every command and
    varying with Django's version, left out)."""
    from django.core.management import load_command_class

    os.environ["COLUMNS"] = WIDTH
    command = load_command_class("cache_tools", name)
    parser = argparse.ArgumentParser(prog=f"manage.py {name}", description=command.help)
    command.add_arguments(parser)
    return parser.format_help()


def stale() -> list[str]:
    """The commands whose committed reference differs from their ``--help``."""
    return [
        name
        for name in COMMANDS
        if not (GENERATED / f"{name}.txt").exists()
        or (GENERATED / f"{name}.txt").read_text() != help_text(name)
    ]


def write() -> None:
    GENERATED.mkdir(exist_ok=True)
    for name in COMMANDS:
        (GENERATED / f"{name}.txt").write_text(help_text(name))


if __name__ == "__main__":
    sys.path.insert(0, str(GENERATED.parent.parent))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "testproject.settings")
    import django

    django.setup()
    if "--check" in sys.argv:
        outdated = stale()
        if outdated:
            sys.exit(f"docs/_generated is stale for {outdated}: run python docs/command_help.py")
    else:
        write()
