"""Start and stop the test project under a real uWSGI, gunicorn or ASGI server (uvicorn), for
the integration tests and benchmarks."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
UWSGI = Path(sys.executable).parent / "uwsgi"
WORKERS = 4  # processes in testproject/uwsgi.ini


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self):
        return json.loads(self.body)

    @property
    def pid(self) -> int:
        return int(self.headers["X-Worker-Pid"])


@dataclass
class Site:
    url: str
    prefix: str
    process: subprocess.Popen
    log: Path
    mode: str = "preforked"

    def request(self, path: str, data: bytes | None = None, timeout: float = 30) -> Reply:
        request = urllib.request.Request(
            self.url + path, data=data, method="POST" if data else "GET"
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return Reply(response.status, dict(response.headers), response.read())
        except urllib.error.HTTPError as error:
            return Reply(error.code, dict(error.headers), error.read())


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _environment(
    tmp: Path, prefix: str, redis_url: str, extra_env: dict[str, str] | None, migrate: bool
) -> dict[str, str]:
    """The server's environment (its own demo database in ``tmp``), migrated if asked."""
    env = {
        **os.environ,
        "REDIS_URL": redis_url,
        "DEMO_DB": str(tmp / "demo.sqlite3"),
        "CACHE_KEY_PREFIX": prefix,
        "DJANGO_SETTINGS_MODULE": "testproject.settings",
        **(extra_env or {}),
    }
    if migrate:
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True
        )
    return env


def _launch(
    command: list[str],
    env: dict[str, str],
    log: Path,
    port: int,
    prefix: str,
    mode: str,
    workers: int,
) -> Site:
    """Start ``command`` (its output in ``log``) and wait until ``workers`` workers answer."""
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    site = Site(f"http://127.0.0.1:{port}", prefix, process, log, mode)
    try:
        wait_for_workers(site, workers)
    except RuntimeError:
        stop_site(site)
        raise
    return site


def start_site(
    tmp: Path,
    mode: str,
    prefix: str,
    redis_url: str,
    ini: str = "testproject/uwsgi.ini",
    extra_env: dict[str, str] | None = None,
    extra_args: tuple[str, ...] = (),
) -> Site:
    """uWSGI serving the project with 4 workers; ``mode`` is "preforked", "lazy-apps", or
    "uwsgi-cache" (preforked, with uWSGI's own cache as the default cache alias)."""
    port = _free_port()
    env = _environment(tmp, prefix, redis_url, {"PORT": str(port), **(extra_env or {})}, True)
    command = [str(UWSGI), "--ini", ini]
    if mode == "uwsgi-cache":
        command = [str(UWSGI), "--ini", "testproject/uwsgi-cache.ini"]
    if mode == "lazy-apps":
        command.append("--lazy-apps")
    command += extra_args
    return _launch(command, env, tmp / "uwsgi.log", port, prefix, mode, WORKERS)


def start_gunicorn_site(
    tmp: Path,
    prefix: str,
    redis_url: str,
    config: Path | None = None,
    workers: int = WORKERS,
    extra_env: dict[str, str] | None = None,
) -> Site:
    """gunicorn serving the project as deployment.rst runs it: ``workers`` processes of 2
    threads, the application loaded in the master before the fork (``--preload``). ``config``:
    a gunicorn settings file for its server hooks."""
    port = _free_port()
    env = _environment(tmp, prefix, redis_url, extra_env, True)
    command = [
        sys.executable, "-m", "gunicorn", "testproject.wsgi:application",
        "--bind", f"127.0.0.1:{port}", "--workers", str(workers), "--threads", "2",
        "--timeout", "30", "--graceful-timeout", "5", "--preload",
    ]  # fmt: skip
    if config is not None:
        command += ["--config", str(config)]
    return _launch(command, env, tmp / "gunicorn.log", port, prefix, "gunicorn", workers)


def start_asgi_site(
    tmp: Path, prefix: str, redis_url: str, workers: int = WORKERS, migrate: bool = True
) -> Site:
    """uvicorn serving the project with ``workers`` processes (one event loop each)."""
    port = _free_port()
    env = _environment(tmp, prefix, redis_url, None, migrate)
    command = [
        sys.executable, "-m", "uvicorn", "testproject.asgi:application",
        "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers),
        "--no-access-log", "--log-level", "warning",
    ]  # fmt: skip
    return _launch(command, env, tmp / "uvicorn.log", port, prefix, "asgi", workers)


def wait_for_workers(site: Site, count: int, exclude: frozenset[int] = frozenset()) -> set[int]:
    """The pids of ``count`` different workers, none in ``exclude``, once each has answered a
    request that reads the cache (with lazy-apps each loads the app after its fork, and only
    loaded workers take requests; a respawned worker announces itself only by answering).
    Raises RuntimeError, with the server's log, after 30 s or if the server exits."""
    deadline = time.monotonic() + 30
    seen: set[int] = set()
    with ThreadPoolExecutor(2 * count) as pool:
        while len(seen) < count:
            try:
                replies = list(pool.map(lambda _: site.request("/demo/info", timeout=2), range(8)))
                seen.update(r.pid for r in replies if r.status == 200 and r.pid not in exclude)
            except OSError:  # a connection a killed worker had accepted
                pass
            if site.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"only {len(seen)} of {count} workers answered:\n{site.log.read_text()[-3000:]}"
                )
            if len(seen) < count:
                time.sleep(0.05)
    return seen


def stop_site(site: Site) -> None:
    if site.process.poll() is None:
        site.process.send_signal(signal.SIGTERM)  # die-on-term: a clean stop
        try:
            site.process.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(site.process.pid, signal.SIGKILL)
            site.process.wait()
