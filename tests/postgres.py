"""A real PostgreSQL for the test run, without root or a system install: the ``pgserver``
wheel embeds it. Started once per run, at the first call, and shared with the run's child
processes (fork, uWSGI, gunicorn) through ``CACHE_TOOLS_TEST_POSTGRES``, the directory of its
socket; stopped and deleted when the run ends."""

from __future__ import annotations

import os
import tempfile
import warnings

ENVIRONMENT = "CACHE_TOOLS_TEST_POSTGRES"


def postgres_socket_directory() -> str:
    """The directory of the server's socket (Django's ``HOST``), starting it if needed."""
    existing = os.environ.get(ENVIRONMENT)
    if existing:
        return existing
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs: no XDG_RUNTIME_DIR in a container
        import pgserver

        directory = tempfile.mkdtemp(prefix="cache-tools-pg-")
        server = pgserver.get_server(directory, cleanup_mode="delete")
    # postgresql://postgres:@/postgres?host=<directory>
    host = server.get_uri().rpartition("host=")[2]
    os.environ[ENVIRONMENT] = host
    return host


def database(name: str = "postgres") -> dict[str, object]:
    """A ``DATABASES`` entry for the run's server."""
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": name,
        "USER": "postgres",
        "HOST": postgres_socket_directory(),
        "CONN_MAX_AGE": 0,
    }
