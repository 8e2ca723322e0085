"""Delivering a rendered email: SMTP (any provider) or, with no SMTP_URL, the development outbox.

`SMTP_URL` forms:
  smtp://user:pass@host:587            plain connection, STARTTLS when the server offers it
  smtp://host:25?starttls=require      refuse to send without STARTTLS
  smtp://host:25?starttls=off          never upgrade (a local relay or a test sink)
  smtps://user:pass@host:465           TLS from the first byte
  ...&timeout=20                       socket timeout in seconds (default 30)

Failures are sorted into the kinds a send job must tell apart: `TransientDeliveryError` (4xx,
connection refused or dropped, timeouts, all before the server could have taken the message:
retry later), `PermanentDeliveryError` (5xx for the recipient: do not retry) and
`DeliveryOutcomeUnknown` (the whole message went out but the server's answer never came back: it
may have been accepted, so it is not sent again; RFC 1047 describes the duplicates that
resending causes). A worker keeps one SMTP connection open between messages, since
connecting and the TLS handshake cost more than the message itself.
"""

from __future__ import annotations

import smtplib
import ssl
import threading
import time
import uuid
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import dkim

from okapp.config import Config
from okapp.emails.render import RenderedEmail

DKIM_HEADERS = (b"from", b"to", b"subject", b"date", b"message-id", b"reply-to",
                b"list-unsubscribe", b"list-unsubscribe-post", b"mime-version", b"content-type")


IDLE_CHECK_SECONDS = 10


class DeliveryError(Exception):
    """Base class: the email did not go out, or may not have."""


class TransientDeliveryError(DeliveryError):
    """Try again later: the server or the network said "not now"."""


class PermanentDeliveryError(DeliveryError):
    """Do not try again: the server refused this message or recipient for good."""


class DeliveryOutcomeUnknown(DeliveryError):
    """The server received the whole message, then its answer was lost (timeout, dropped
    connection): it may have been accepted. Sending it again could deliver it twice."""


class TransportConfigError(ValueError):
    """SMTP_URL or the DKIM settings cannot be used."""


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int
    implicit_tls: bool
    starttls: str  # "auto" | "require" | "off"
    username: str
    password: str
    timeout: float

    @classmethod
    def parse(cls, url: str) -> SmtpSettings:
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps"):
            raise TransportConfigError("SMTP_URL must start with smtp:// or smtps://")
        if not parts.hostname:
            raise TransportConfigError("SMTP_URL has no host")
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        starttls = query.get("starttls", "auto")
        if starttls not in ("auto", "require", "off"):
            raise TransportConfigError("SMTP_URL starttls= must be auto, require or off")
        try:
            timeout = float(query.get("timeout", "30"))
        except ValueError as exc:
            raise TransportConfigError("SMTP_URL timeout= must be a number of seconds") from exc
        implicit = parts.scheme == "smtps"
        return cls(
            host=parts.hostname, port=parts.port or (465 if implicit else 587),
            implicit_tls=implicit, starttls="off" if implicit else starttls,
            username=unquote(parts.username or ""), password=unquote(parts.password or ""),
            timeout=timeout,
        )


class _KnowsWhenDataWentOut:
    """An SMTP session that notes when a message's data, final dot included, has been written:
    from then on a failure leaves the message's fate unknown."""

    data_sent = False

    def data(self, msg):
        self.data_sent = False
        return super().data(msg)

    def send(self, s):
        super().send(s)
        # Commands are str; only the message data is bytes ending in the final dot.
        if isinstance(s, bytes) and s.endswith(b"\r\n.\r\n"):
            self.data_sent = True


class _SMTP(_KnowsWhenDataWentOut, smtplib.SMTP):
    pass


class _SMTP_SSL(_KnowsWhenDataWentOut, smtplib.SMTP_SSL):
    pass


class SmtpConnection:
    """One open SMTP session, reopened when the server has dropped it."""

    def __init__(self, settings: SmtpSettings):
        self.settings = settings
        self._smtp: smtplib.SMTP | None = None
        self._last_used = 0.0

    def _open(self) -> smtplib.SMTP:
        s = self.settings
        context = ssl.create_default_context()
        if s.implicit_tls:
            smtp = _SMTP_SSL(s.host, s.port, timeout=s.timeout, context=context)
        else:
            smtp = _SMTP(s.host, s.port, timeout=s.timeout)
        try:
            smtp.ehlo()
            if s.starttls != "off" and (s.starttls == "require" or smtp.has_extn("starttls")):
                smtp.starttls(context=context)
                smtp.ehlo()
            if s.username:
                smtp.login(s.username, s.password)
        except BaseException:
            smtp.close()
            raise
        return smtp

    def send(self, envelope_from: str, recipient: str, data: bytes) -> None:
        # A connection idle for a while may have been closed by the server: check it with a
        # NOOP first. Never resend after a failure instead: the server may have taken the
        # message before the connection dropped, and a customer must not get it twice.
        if self._smtp is not None and time.monotonic() - self._last_used > IDLE_CHECK_SECONDS:
            try:
                alive = self._smtp.noop()[0] == 250
            except (smtplib.SMTPException, OSError):
                alive = False
            if not alive:
                self.close()
        if self._smtp is None:
            self._smtp = self._open()
        self._smtp.data_sent = False
        try:
            self._smtp.sendmail(envelope_from, [recipient], data)
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            # No answer at all (an answer, even 4xx, raises SMTPResponseException): after the
            # data went out, the server may have accepted the message.
            if self._smtp.data_sent:
                raise DeliveryOutcomeUnknown(
                    f"the mail server received the whole message but its answer never came "
                    f"({type(exc).__name__}: {exc})") from exc
            raise
        self._last_used = time.monotonic()

    def close(self) -> None:
        if self._smtp is not None:
            try:
                self._smtp.quit()
            except (smtplib.SMTPException, OSError):
                self._smtp.close()
            self._smtp = None


# Open connections not in use, shared by the process's threads: the send job hands off from
# helper threads (okapp.jobs.sends), Send Test from web threads. A sender takes one (or opens
# one) for a message and puts it back afterwards, so each connection carries one message at a time.
_lock = threading.Lock()
_idle: list[SmtpConnection] = []


def _send(settings: SmtpSettings, envelope_from: str, recipient: str, data: bytes) -> None:
    with _lock:
        conn = next((c for c in _idle if c.settings == settings), None)
        if conn is not None:
            _idle.remove(conn)
    conn = conn or SmtpConnection(settings)
    try:
        conn.send(envelope_from, recipient, data)
    except DeliveryOutcomeUnknown:
        conn.close()
        raise
    except (smtplib.SMTPException, OSError) as exc:  # OSError covers timeouts
        if isinstance(exc, smtplib.SMTPRecipientsRefused):
            _put_back(conn)  # only this recipient was refused; the session is fine
        else:
            conn.close()  # the session's state is unknown; start clean next time
        raise _classify(exc) from exc
    _put_back(conn)


def _put_back(conn: SmtpConnection) -> None:
    with _lock:
        stale = [c for c in _idle if c.settings != conn.settings]  # SMTP_URL changed
        _idle[:] = [c for c in _idle if c.settings == conn.settings] + [conn]
    for c in stale:
        c.close()


def close_connections() -> None:
    with _lock:
        closing = list(_idle)
        _idle.clear()
    for conn in closing:
        conn.close()


@lru_cache(maxsize=4)
def _dkim_key(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise TransportConfigError(f"cannot read DKIM_PRIVATE_KEY_PATH: {exc}") from exc


def dkim_sign(config: Config, data: bytes) -> bytes:
    """Prepend a DKIM-Signature when DKIM_PRIVATE_KEY_PATH, DKIM_SELECTOR and DKIM_DOMAIN are set."""
    settings = (config.dkim_private_key_path, config.dkim_selector, config.dkim_domain)
    if not any(settings):
        return data
    if not all(settings):
        raise TransportConfigError(
            "set all of DKIM_PRIVATE_KEY_PATH, DKIM_SELECTOR and DKIM_DOMAIN, or none")
    signature = dkim.sign(
        data, config.dkim_selector.encode(), config.dkim_domain.encode(),
        _dkim_key(config.dkim_private_key_path), include_headers=list(DKIM_HEADERS),
    )
    return signature + data


def _classify(exc: Exception) -> DeliveryError:
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _msg in exc.recipients.values()]
        detail = "; ".join(f"{code} {msg.decode(errors='replace') if isinstance(msg, bytes) else msg}"
                           for code, msg in exc.recipients.values())
        if codes and all(400 <= code < 500 for code in codes):
            return TransientDeliveryError(f"recipient deferred: {detail}")
        return PermanentDeliveryError(f"recipient refused: {detail}")
    if isinstance(exc, smtplib.SMTPResponseException):
        message = exc.smtp_error.decode(errors="replace") if isinstance(
            exc.smtp_error, bytes) else str(exc.smtp_error)
        text = f"{exc.smtp_code} {message}"
        # Auth failures and a refused greeting are our configuration or the server's state,
        # not this recipient's fault: retry them.
        not_the_recipient = isinstance(exc, smtplib.SMTPAuthenticationError | smtplib.SMTPConnectError)
        if 500 <= exc.smtp_code < 600 and not not_the_recipient:
            return PermanentDeliveryError(text)
        return TransientDeliveryError(text)
    return TransientDeliveryError(f"{type(exc).__name__}: {exc}")


def write_outbox(outbox: Path, rendered: RenderedEmail, data: bytes) -> Path:
    """Development mail: one .eml file per message, named so that a listing sorts by time."""
    outbox.mkdir(parents=True, exist_ok=True)
    path = outbox / f"{time.time_ns()}-{uuid.uuid4().hex[:8]}.eml"
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)  # atomic: a reader never sees half a message
    return path


def deliver(config: Config, rendered: RenderedEmail) -> None:
    """Send one email, or raise TransientDeliveryError / PermanentDeliveryError /
    DeliveryOutcomeUnknown."""
    data = dkim_sign(config, rendered.as_bytes())
    if not config.smtp_url:
        write_outbox(config.outbox_path, rendered, data)
        return
    _send(SmtpSettings.parse(config.smtp_url), rendered.envelope_from, rendered.recipient, data)
