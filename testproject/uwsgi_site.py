"""Start and stop the test project under a real uWSGI or a real ASGI server (uvicorn), for the
integration tests and benchmarks."""

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
    env = {
        **os.environ,
        "PORT": str(port),
        "REDIS_URL": redis_url,
        "DEMO_DB": str(tmp / "demo.sqlite3"),
        "CACHE_KEY_PREFIX": prefix,
        "DJANGO_SETTINGS_MODULE": "testproject.settings",
        **(extra_env or {}),
    }
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True
    )
    log = tmp / "uwsgi.log"
    command = [str(UWSGI), "--ini", ini]
    if mode == "uwsgi-cache":
        command = [str(UWSGI), "--ini", "testproject/uwsgi-cache.ini"]
    if mode == "lazy-apps":
        command.append("--lazy-apps")
    command += extra_args
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    site = Site(f"http://127.0.0.1:{port}", prefix, process, log, mode)
    _wait_for_workers(site, WORKERS)
    return site


def start_asgi_site(
    tmp: Path, prefix: str, redis_url: str, workers: int = WORKERS, migrate: bool = True
) -> Site:
    """uvicorn serving the project with ``workers`` processes (one event loop each)."""
    port = _free_port()
    env = {
        **os.environ,
        "REDIS_URL": redis_url,
        "DEMO_DB": str(tmp / "demo.sqlite3"),
        "CACHE_KEY_PREFIX": prefix,
        "DJANGO_SETTINGS_MODULE": "testproject.settings",
    }
    if migrate:
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True
        )
    log = tmp / "uvicorn.log"
    command = [
        sys.executable, "-m", "uvicorn", "testproject.asgi:application",
        "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers),
        "--no-access-log", "--log-level", "warning",
    ]  # fmt: skip
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    site = Site(f"http://127.0.0.1:{port}", prefix, process, log, "asgi")
    _wait_for_workers(site, workers)
    return site


def _wait_for_workers(site: Site, count: int) -> None:
    """Until ``count`` different workers have answered (with lazy-apps each loads the app
    after its fork, and only loaded workers take requests)."""
    deadline = time.monotonic() + 30
    seen: set[int] = set()
    with ThreadPoolExecutor(2 * count) as pool:
        while len(seen) < count:
            try:
                replies = list(pool.map(lambda _: site.request("/demo/info", timeout=2), range(8)))
                seen.update(r.pid for r in replies if r.status == 200)
            except OSError:
                pass
            if site.process.poll() is not None or time.monotonic() > deadline:
                stop_site(site)
                raise RuntimeError(
                    f"uWSGI did not start {count} workers:\n{site.log.read_text()[-3000:]}"
                )
            if len(seen) < count:
                time.sleep(0.05)


def stop_site(site: Site) -> None:
    if site.process.poll() is None:
        site.process.send_signal(signal.SIGTERM)  # die-on-term: a clean stop
        try:
            site.process.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(site.process.pid, signal.SIGKILL)
            site.process.wait()
