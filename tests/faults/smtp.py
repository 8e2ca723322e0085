"""A real SMTP server (aiosmtpd) whose answers a test can change while mail flows: the fault
suite's companion to tests/smtp_sink.py (which always accepts, or refuses named recipients)."""

from __future__ import annotations

import asyncio
import threading
from email import message_from_bytes, policy
from email.message import EmailMessage

from aiosmtpd.controller import Controller

from tests.smtp_sink import _free_port


class FaultySmtp:
    """Modes: `ok`; `421` / `451` (every recipient deferred); `timeout` (RCPT hangs: the server
    never gets the message, so the sender may safely try again; a hang after the data is
    tests/test_engine_tick's lost-answer case, which is never retried).
    `reject` holds addresses answered 550 whatever the mode."""

    def __init__(self, port: int = 0, hang_seconds: float = 30, keep: int | None = None):
        self.messages: list[EmailMessage] = []  # parsed, the first `keep` (all when None)
        self.received: list[tuple[str, str]] = []  # (Message-ID, recipient) of every mail
        self.keep = keep
        self.mode = "ok"
        self.reject: set[str] = set()
        self.hang_seconds = hang_seconds
        self.attempts = 0
        self._lock = threading.Lock()
        self.controller = Controller(self, hostname="127.0.0.1", port=port or _free_port())

    @property
    def port(self) -> int:
        return self.controller.port

    def start(self) -> FaultySmtp:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        with self._lock:
            self.attempts += 1
        if self.mode == "timeout":
            await asyncio.sleep(self.hang_seconds)
            return "451 4.4.2 Timed out"
        if self.mode == "421":
            return "421 4.7.0 Service not available, try again later"
        if self.mode == "451":
            return "451 4.3.0 Temporary local problem, try again later"
        if address.lower() in self.reject:
            return "550 5.1.1 Recipient address rejected: no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        message = message_from_bytes(envelope.content, policy=policy.default)
        with self._lock:
            self.received.append((message["Message-ID"], envelope.rcpt_tos[0].lower()))
            if self.keep is None or len(self.messages) < self.keep:
                self.messages.append(message)
        return "250 Message accepted for delivery"

    def message_ids(self) -> list[str]:
        with self._lock:
            return [mid for mid, _ in self.received]

