"""The SMTP transport against real servers: STARTTLS with a certificate, login, refusals."""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl

import pytest
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from okapp.emails.render import RenderedEmail
from okapp.emails.transport import (
    SmtpSettings,
    TransientDeliveryError,
    TransportConfigError,
    close_connections,
    deliver,
)
from tests.smtp_sink import SmtpSink


@pytest.fixture(autouse=True)
def _fresh_connections():
    yield
    close_connections()


@pytest.fixture
def certificate(tmp_path, monkeypatch):
    """A self-signed certificate for 127.0.0.1, trusted by this test's default SSL context."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    monkeypatch.setenv("SSL_CERT_FILE", str(cert_path))  # what create_default_context trusts
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert_path, key_path)
    return server


def _authenticator(server, session, envelope, mechanism, auth_data):
    ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
        b"okapp", b"s3cret:/@")
    return AuthResult(success=ok, handled=False)  # handled=False: the server answers 535


def _email() -> RenderedEmail:
    return RenderedEmail(recipient="jane@example.com", subject="Hello", html="<p>Hi</p>",
                         text="Hi", envelope_from="reviews@okapp.localhost",
                         headers={"Message-ID": "<t1@okapp.localhost>", "Subject": "Hello",
                                  "From": "reviews@okapp.localhost", "To": "jane@example.com"})


def test_starttls_and_login_with_escaped_credentials(config, certificate):
    sink = SmtpSink(tls_context=certificate, require_starttls=True, auth_required=True,
                    authenticator=_authenticator, auth_exclude_mechanism=["LOGIN"]).start()
    try:
        config.smtp_url = f"smtp://okapp:s3cret%3A%2F%40@127.0.0.1:{sink.port}?starttls=require"
        deliver(config, _email())
        assert sink.count == 1
        close_connections()
        config.smtp_url = f"smtp://okapp:wrong@127.0.0.1:{sink.port}?timeout=5"
        with pytest.raises(TransientDeliveryError, match="535"):  # our setup, not the customer
            deliver(config, _email())
        assert sink.count == 1
    finally:
        sink.stop()


def test_starttls_required_but_not_offered_is_refused(config):
    sink = SmtpSink().start()
    try:
        config.smtp_url = f"smtp://127.0.0.1:{sink.port}?starttls=require&timeout=5"
        with pytest.raises(TransientDeliveryError, match="STARTTLS"):
            deliver(config, _email())
        assert sink.count == 0  # nothing goes out in the clear
    finally:
        sink.stop()


def test_smtp_url_forms():
    s = SmtpSettings.parse("smtps://user%40x:p%40ss@mail.example?timeout=7")
    assert (s.host, s.port, s.implicit_tls, s.username, s.password, s.timeout) == (
        "mail.example", 465, True, "user@x", "p@ss", 7.0)
    assert SmtpSettings.parse("smtp://mail.example").port == 587
    assert SmtpSettings.parse("smtp://mail.example:25?starttls=off").starttls == "off"
    for bad in ("http://mail.example", "smtp://", "smtp://h?starttls=maybe", "smtp://h?timeout=x"):
        with pytest.raises(TransportConfigError):
            SmtpSettings.parse(bad)
