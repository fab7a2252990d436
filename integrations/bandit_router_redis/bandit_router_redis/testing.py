"""Test helpers: find the test Redis, skip (or fail) without it, start a private redis-server.

Tests that need Redis read ``REDIS_URL`` (default ``redis://127.0.0.1:6379/0``), use their own
key prefix, delete their keys afterwards, and skip with a clear reason when Redis is
unreachable, unless ``BANDIT_ROUTER_REQUIRE_REDIS=1``, where they fail instead (CI).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

import redis

from bandit_router_redis._store import mask_url

__all__ = [
    "DEFAULT_REDIS_URL",
    "RedisServer",
    "delete_prefix",
    "free_port",
    "redis_unavailable",
    "redis_url",
    "require_redis",
]

#: The Redis the tests use when ``REDIS_URL`` is not set.
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
_checked: dict[str, str | None] = {}


def redis_url() -> str:
    """Return ``$REDIS_URL``, or :data:`DEFAULT_REDIS_URL`."""
    return os.environ.get("REDIS_URL") or DEFAULT_REDIS_URL


def redis_unavailable(url: str) -> str | None:
    """Return why Redis at ``url`` cannot be used (unreachable, too old), or None if it can.

    The answer is cached per URL for the life of the process.
    """
    if url in _checked:
        return _checked[url]
    reason: str | None = None
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=1.0, socket_timeout=2.0)
        try:
            version = str(client.info("server").get("redis_version", "0"))
        finally:
            client.close()
        major = int(version.split(".")[0])
        if major < 7:
            reason = f"Redis at {mask_url(url)} is version {version}; RedisStore needs >= 7.0"
    except (redis.RedisError, OSError, ValueError) as exc:
        reason = f"Redis at {mask_url(url)} is unreachable ({type(exc).__name__}: {exc})"
    _checked[url] = reason
    return reason


def require_redis(url: str) -> None:
    """Skip the calling test when Redis at ``url`` is unusable; fail it in CI.

    CI sets ``BANDIT_ROUTER_REQUIRE_REDIS=1``: there a missing Redis is a failure, not a skip.
    """
    import pytest  # only the tests need pytest

    reason = redis_unavailable(url)
    if reason is None:
        return
    if os.environ.get("BANDIT_ROUTER_REQUIRE_REDIS") == "1":
        pytest.fail(f"{reason}, and BANDIT_ROUTER_REQUIRE_REDIS=1", pytrace=False)
    pytest.skip(f"{reason}; set REDIS_URL to a Redis >= 7 to run this test")


def delete_prefix(url: str, prefix: str) -> int:
    """Delete every key that starts with ``prefix + ":"``; return how many.

    Args:
        url: The Redis URL.
        prefix: A store's key prefix (it must not contain glob characters).
    """
    client = redis.Redis.from_url(url, socket_connect_timeout=1.0, socket_timeout=5.0)
    try:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        for i in range(0, len(keys), 500):
            client.delete(*keys[i : i + 500])
        return len(keys)
    finally:
        client.close()


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class RedisServer:
    """A private ``redis-server`` on a free loopback port, for outage tests.

    It keeps an append-only file (fsync on every write) in its own folder, so :meth:`stop`
    followed by :meth:`start` brings the same data back, as a production Redis with AOF
    persistence does. Never touches another server.

    Args:
        password: Require this password (``--requirepass``), if given.
        executable: The ``redis-server`` binary.
        extra: More command-line arguments.
    """

    def __init__(
        self,
        *,
        password: str | None = None,
        executable: str | None = None,
        extra: tuple[str, ...] = (),
    ) -> None:
        found = executable or shutil.which("redis-server") or "/usr/bin/redis-server"
        if not Path(found).exists():
            raise FileNotFoundError("redis-server is not installed")
        self.executable = found
        self.password = password
        self.extra = extra
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="bandit-router-redis-"))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The server's URL (with the password, if any)."""
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        """Start the server (again) on the same port and folder; wait until it answers."""
        args = [
            self.executable,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.dir),
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--logfile",
            str(self.dir / "redis.log"),
            *(("--requirepass", self.password) if self.password else ()),
            *self.extra,
        ]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while True:
            try:
                client = redis.Redis.from_url(self.url, socket_connect_timeout=0.5)
                try:
                    if client.ping():
                        return
                finally:
                    client.close()
            except (redis.RedisError, OSError):
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                log = (self.dir / "redis.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"redis-server did not start on port {self.port}: {log}")
            time.sleep(0.02)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
        """Stop the server with ``sig`` (SIGTERM: clean shutdown; SIGKILL: a crash)."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def close(self) -> None:
        """Stop the server and delete its folder."""
        self.stop(signal.SIGKILL)
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
