"""cache_tools.testing from the command line, as make bench and make demo use it."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from cache_tools.testing import RedisServer


def run_module(*args, env=None):
    environment = {k: v for k, v in os.environ.items() if k != "REDIS_URL"} | (env or {})
    return subprocess.run(
        [sys.executable, "-m", "cache_tools.testing", *args],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_run_starts_a_server_for_the_command_and_stops_it():
    script = (
        "import os, redis; url = os.environ['REDIS_URL']; print(url); "
        "redis.Redis.from_url(url).ping()"
    )
    result = run_module("run", "--", sys.executable, "-c", script)
    assert result.returncode == 0, result.stderr
    url = result.stdout.strip()
    assert url.startswith("redis://127.0.0.1:") and "Stopped redis-server" in result.stderr
    try:
        redis.Redis.from_url(url, socket_connect_timeout=0.5).ping()
    except redis.ConnectionError:
        pass  # stopped with the command
    else:
        raise AssertionError(f"{url} still answers")


def test_run_passes_the_commands_status_and_refuses_bad_usage():
    assert run_module("run", "--", sys.executable, "-c", "raise SystemExit(3)").returncode == 3
    bad = run_module("serve")
    assert bad.returncode == 2 and "usage: python -m cache_tools.testing run --" in bad.stderr


def test_the_cluster_fixture_spreads_slots_over_three_primaries(redis_cluster):
    client = redis.RedisCluster(host="127.0.0.1", port=redis_cluster.startup_nodes[0][1])
    try:
        primaries = {redis_cluster.primary_of(f"key-{n}").port for n in range(30)}
        assert len(primaries) == 3
        assert len(client.get_replicas()) == 3
    finally:
        client.close()


def test_the_sentinel_fixture_names_a_primary_that_takes_writes(redis_sentinel):
    from redis.sentinel import Sentinel

    sentinel = Sentinel(redis_sentinel.sentinel_addresses, socket_timeout=1)
    primary = sentinel.master_for(redis_sentinel.master_name, socket_timeout=1)
    assert primary.set("cttest-sentinel", 1)
    assert sentinel.discover_master(redis_sentinel.master_name)[1] == redis_sentinel.primary_port()
    primary.delete("cttest-sentinel")


def test_a_chosen_port_taken_before_start_is_replaced():
    """Between choosing a free port and binding it, another process may take it (another
    test's server, a client's ephemeral port): the server starts on another one instead of
    failing, and is not fooled by the other server answering on the port."""
    squatter = RedisServer().start()
    try:
        server = RedisServer()
        server.port = squatter.port  # as if the squatter took the chosen port meanwhile
        try:
            server.start()
            assert server.port != squatter.port
            pid = redis.Redis(port=server.port).info("server")["process_id"]
            assert pid == server.process.pid
        finally:
            server.stop()
        given = RedisServer(port=squatter.port)  # a port the caller named is not replaced
        with pytest.raises(RuntimeError, match="Address already in use"):
            given.start()
    finally:
        squatter.stop()


def thread_states(pid):
    """The state letter of each thread of ``pid`` (Linux /proc)."""
    tasks = Path(f"/proc/{pid}/task")
    return [(task / "stat").read_text().rpartition(")")[2].split()[0] for task in tasks.iterdir()]


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads /proc (Linux)")
def test_pause_returns_once_every_thread_of_the_server_has_stopped():
    """SIGSTOP is taken by one thread, which stops the others: pause() waits for that, so no
    thread can still answer a request after it returned. Pausing twice does not hang."""
    with RedisServer() as server:
        client = redis.Redis.from_url(server.url, socket_timeout=0.2)
        client.ping()
        assert len(thread_states(server.process.pid)) > 1  # the background I/O threads
        for _ in range(200):
            server.pause()
            assert set(thread_states(server.process.pid)) <= {"T", "t"}
            server.pause()
            server.resume()
        server.pause()
        with pytest.raises(redis.TimeoutError):
            client.ping()
        server.resume()
        client.ping()
