"""A real SMTP server (aiosmtpd) for tests and benches: it keeps every message it receives.

    from tests.smtp_sink import smtp_sink_fixture  # noqa: F401  (the `smtp_sink` fixture)

    def test_x(smtp_sink, config):
        config.smtp_url = smtp_sink.url
        ...
        [msg] = smtp_sink.messages()   # email.message.EmailMessage objects

`smtp_sink.refuse[address] = "550 5.1.1 no such user"` makes the server refuse a recipient;
`smtp_sink.slow["RCPT"] = 2` answers each RCPT 2 s late, `smtp_sink.slow["DATA"] = 2` keeps each
message and then answers 2 s late (a server whose answer is lost after it took the message).
"""

from __future__ import annotations

import asyncio
import socket
import threading
from email import message_from_bytes, policy
from email.message import EmailMessage

import pytest
from aiosmtpd.controller import Controller


class _Handler:
    def __init__(self, keep: bool = True):
        self.keep = keep
        self.lock = threading.Lock()
        self.received: list[tuple[str, list[str], bytes]] = []
        self.count = 0
        self.refuse: dict[str, str] = {}
        self.slow: dict[str, float] = {}

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        await asyncio.sleep(self.slow.get("RCPT", 0))
        reply = self.refuse.get(address.lower())
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            self.count += 1
            if self.keep:
                self.received.append((envelope.mail_from, list(envelope.rcpt_tos),
                                      bytes(envelope.original_content or envelope.content)))
        await asyncio.sleep(self.slow.get("DATA", 0))
        return "250 Message accepted for delivery"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SmtpSink:
    def __init__(self, keep: bool = True, port: int | None = None, **smtp_options):
        """`smtp_options` go to aiosmtpd's SMTP server: tls_context, require_starttls,
        authenticator, auth_required... (a production-like server for the transport tests)."""
        self.handler = _Handler(keep)
        self.port = port or _free_port()
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port,
                                     decode_data=False, data_size_limit=0, **smtp_options)

    @property
    def url(self) -> str:
        # A local sink speaks no TLS; production URLs use STARTTLS or smtps://.
        return f"smtp://127.0.0.1:{self.port}?starttls=off&timeout=5"

    @property
    def refuse(self) -> dict[str, str]:
        return self.handler.refuse

    @property
    def slow(self) -> dict[str, float]:
        return self.handler.slow

    @property
    def count(self) -> int:
        return self.handler.count

    def raw(self) -> list[tuple[str, list[str], bytes]]:
        with self.handler.lock:
            return list(self.handler.received)

    def messages(self) -> list[EmailMessage]:
        return [message_from_bytes(data, policy=policy.default) for _f, _t, data in self.raw()]

    def start(self) -> SmtpSink:
        self.controller.start()
        return self

    def stop(self) -> None:
        """Idempotent; a stopped sink cannot be started again (make a new one)."""
        if self.controller.loop.is_running():
            self.controller.stop()


@pytest.fixture(name="smtp_sink")
def smtp_sink_fixture():
    sink = SmtpSink().start()
    yield sink
    sink.stop()
