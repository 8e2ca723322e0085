"""Turning an EmailTemplate and an order into a finished email: HTML (MJML), text and headers.

Two layers, so merchant text can never become code:
1. merchant fields (subject, heading, body, ...) are sandboxed Jinja rendered to *plain text*
   (okapp.emails.sandbox);
2. the MJML layout in templates/emails/<kind>.mjml is ordinary Jinja with autoescaping, which
   escapes that text like any other value, and MJML then compiles it to email-safe HTML.

`render_message` renders a queued Message for its real order (what the send job calls);
`render_sample` renders the editor's preview and Send Test from catalogue products.
"""

from __future__ import annotations

import binascii
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from email import message_from_bytes
from email import policy as email_policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, make_msgid
from functools import lru_cache
from typing import Any
from urllib.parse import urlencode

import mjml
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import escape
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from okapp.config import PROJECT_ROOT, Config
from okapp.emails import copy, sandbox
from okapp.emails.tracking import Links
from okapp.models import (
    SHOP_SETTING_DEFAULTS,
    EmailKind,
    EmailTemplate,
    Message,
    Order,
    Product,
    Review,
    Shop,
)
from okapp.reviews.tokens import review_url
from okapp.sequences.items import products_by_gid, reviewable_items

MAX_HTML_BYTES = 100 * 1024  # Gmail clips messages over ~102 KB
_HEX_COLOR = re.compile(r"^#(?:[0-9a-fA-F]{3}){1,2}$")

_layouts = Environment(
    loader=FileSystemLoader(str(PROJECT_ROOT / "templates")),
    autoescape=select_autoescape(enabled_extensions=("mjml", "html")),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    auto_reload=False,  # templates change with a deploy; checking mtimes cost a stat per email
)


class NothingToReview(Exception):
    """The order has no reviewable product left (all refunded or excluded since recruitment);
    the send job records the message as skipped instead of sending an empty email."""


# Headers may be up to 998 characters (RFC 5322). At the default 78, Python encodes a long
# List-Unsubscribe URL as =?utf-8?q?...?= words, which mail clients do not decode there.
_HEADER_POLICY = SMTP.clone(max_line_length=998)


@dataclass
class RenderedEmail:
    recipient: str
    subject: str
    html: str
    text: str
    envelope_from: str
    headers: dict[str, str] = field(default_factory=dict)  # Message-ID, Date, From, ...

    @property
    def message_id(self) -> str:
        return self.headers["Message-ID"]

    def as_bytes(self) -> bytes:
        """The message as sent: multipart/alternative, text first and HTML last (the part
        clients prefer), both UTF-8 quoted-printable, CRLF line ends.

        Assembled here rather than by `email.generator`, whose pure-Python encoders cost more
        than rendering the email; `to_message()` parses these bytes back for anyone who wants
        the standard object."""
        boundary = f"=_okapp_{secrets.token_hex(12)}"
        lines = [_header_line(name, value) for name, value in self.headers.items()]
        lines.append("MIME-Version: 1.0\r\n")
        lines.append(f'Content-Type: multipart/alternative; boundary="{boundary}"\r\n\r\n')
        for subtype, body in (("plain", self.text), ("html", self.html)):
            lines.append(f"--{boundary}\r\nContent-Type: text/{subtype}; charset=\"utf-8\"\r\n"
                         "Content-Transfer-Encoding: quoted-printable\r\n\r\n")
            lines.append(_quoted_printable(body))
            lines.append("\r\n")
        lines.append(f"--{boundary}--\r\n")
        return "".join(lines).encode("ascii")

    def to_message(self) -> EmailMessage:
        return message_from_bytes(self.as_bytes(), policy=email_policy.default)


def _header_line(name: str, value: str) -> str:
    """`Name: value` CRLF. Plain ASCII that fits a line is written as is (values here have no
    CR/LF: `_one_line` and Address saw to that); anything else, such as a subject with accents,
    goes through the email package for RFC 2047 encoding and folding."""
    line = f"{name}: {value}\r\n"
    if line.isascii() and len(line) <= 998 and "\n" not in value and "\r" not in value:
        return line
    return _HEADER_POLICY.header_factory(name, value).fold(policy=_HEADER_POLICY)


def _quoted_printable(text: str) -> str:
    encoded = binascii.b2a_qp(text.replace("\r\n", "\n").encode("utf-8"), istext=True)
    return encoded.decode("ascii").replace("\n", "\r\n")


@dataclass
class ProductBlock:
    title: str
    image_url: str
    review_url: str
    star_urls: list[tuple[int, str]]  # (rating, url), 1..5


def _one_line(value: str) -> str:
    """Header-safe: no CR/LF (header injection) and no runs of whitespace."""
    return " ".join((value or "").split())


def _color(*candidates: str) -> str:
    for value in candidates:
        if value and _HEX_COLOR.match(value.strip()):
            return value.strip()
    return SHOP_SETTING_DEFAULTS["brand_color"]


def _text_color_on(background: str) -> str:
    """Black or white, whichever reads better on the brand colour (WCAG relative luminance)."""
    hex_digits = background.lstrip("#")
    if len(hex_digits) == 3:
        hex_digits = "".join(c * 2 for c in hex_digits)
    channels = [int(hex_digits[i:i + 2], 16) / 255 for i in (0, 2, 4)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    luminance = 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]
    return "#000000" if luminance > 0.4 else "#ffffff"


def _safe_url(url: str) -> str:
    url = (url or "").strip()
    return url if url.startswith(("https://", "http://")) else ""


def merchant_fields(template: EmailTemplate | None, kind: str, locale: str) -> dict[str, str]:
    """The template's fields for this locale, each falling back to the built-in copy."""
    fields = copy.default_fields(kind, locale)
    if template is not None:
        saved = (template.fields or {}).get(locale) or {}
        for name in copy.FIELD_NAMES:
            if isinstance(saved.get(name), str) and saved[name].strip():
                fields[name] = saved[name]
    return fields


@dataclass
class Content:
    """Everything the layouts need, already decided: the one context both HTML and text share."""

    kind: str
    locale: str
    fields: dict[str, str]  # merchant source, rendered below
    variables: sandbox.Variables
    shop: Shop
    brand_color: str
    logo_url: str
    products: list[ProductBlock]
    button_url: str
    links: Links

    def context(self) -> dict[str, Any]:
        rendered = {name: sandbox.render_field(src, self.variables)
                    for name, src in self.fields.items()}
        paragraphs = [p.strip() for p in re.split(r"\n\s*\n", rendered["body"]) if p.strip()]
        chrome = copy.CHROME[self.locale]
        shop_name = self.shop.name or self.shop.domain
        return {
            "kind": self.kind,
            "locale": self.locale,
            "subject": _one_line(rendered["subject"]),
            "preheader": _one_line(rendered["preheader"]),
            "heading": rendered["heading"],
            "paragraphs": paragraphs,
            "paragraph_lines": [p.split("\n") for p in paragraphs],
            "button_text": _one_line(rendered["button_text"]),
            "button_url": self.links.click(self.button_url),
            "brand_color": self.brand_color,
            "button_text_color": _text_color_on(self.brand_color),
            "logo_url": _safe_url(self.logo_url),
            "shop_name": shop_name,
            "postal_address": (self.shop.setting("postal_address") or "").strip(),
            "products": [
                {"title": p.title, "image_url": _safe_url(p.image_url),
                 "review_url": self.links.click(p.review_url),
                 "stars": [{"rating": r, "url": self.links.click(u),
                            "label": chrome["star_label"].format(rating=r)}
                           for r, u in p.star_urls]}
                for p in self.products
            ],
            "not_arrived_url": self._not_arrived_url(),
            "unsubscribe_url": self.links.unsubscribe(),
            "open_pixel_url": self.links.open_pixel(),
            "chrome": {**chrome, "why": chrome["why"].format(shop=shop_name)},
        }

    def _not_arrived_url(self) -> str | None:
        # Only asked before the customer has had a chance to review: not on the media request.
        if self.kind == EmailKind.MEDIA_REQUEST.value:
            return None
        return self.links.not_arrived()


# Compiling MJML costs several milliseconds, far more than the rest of an email, yet every email
# of a kind, locale and shop has the same layout around different texts and links. So the layout
# is compiled once with numbered slots where the texts go (`_slotted`), and each email fills the
# slots with its own escaped values: the same HTML as compiling it afresh
# (tests/test_email_render.py compares the two), at a fraction of the cost.
_SLOT = f"okslot{secrets.token_hex(4)}n"
_SLOT_PATTERN = re.compile(_SLOT + r"(\d+)z")
# Values the layout uses as they are (in CSS, in comparisons): part of the compiled layout's key.
_LAYOUT_KEYS = frozenset({"kind", "locale", "brand_color", "button_text_color"})
_COMPILED_LIMIT = 256
# Per shape: the compiled HTML split at its slots, literal text at even indexes and slot numbers
# at odd ones, so filling it is one join rather than a regex pass over the whole page.
_compiled: dict[str, list] = {}


def _slotted(value: Any, key: str, slots: list[str]) -> Any:
    """`value` with every non-empty text (other than _LAYOUT_KEYS) replaced by a slot name, and
    those texts appended to `slots`. Empty texts, None and numbers stay: `{% if %}` reads them."""
    if isinstance(value, dict):
        return {k: _slotted(v, k, slots) for k, v in value.items()}
    if isinstance(value, list):
        return [_slotted(v, key, slots) for v in value]
    if isinstance(value, str) and value and key not in _LAYOUT_KEYS:
        slots.append(value)
        return f"{_SLOT}{len(slots) - 1}z"
    return value


def compile_layout(kind: str, ctx: dict[str, Any]) -> str:
    """The email's HTML, compiled by MJML from the rendered layout (no cache)."""
    source = _layouts.get_template(f"emails/{kind}.mjml").render(ctx)
    return mjml.mjml2html(source, disable_comments=False)


def layout_html(kind: str, ctx: dict[str, Any]) -> str:
    """The email's HTML: the compiled layout for this shape of email, slots filled in."""
    slots: list[str] = []
    skeleton = _slotted(ctx, "", slots)
    key = f"{kind}|{skeleton!r}"
    parts = _compiled.get(key)
    if parts is None:
        if len(_compiled) >= _COMPILED_LIMIT:
            _compiled.clear()
        parts = _SLOT_PATTERN.split(compile_layout(kind, skeleton))
        for i in range(1, len(parts), 2):
            parts[i] = int(parts[i])
        _compiled[key] = parts
    return "".join([part if i % 2 == 0 else escape(slots[part])
                    for i, part in enumerate(parts)])


def render_content(content: Content, recipient: str, config: Config, now: datetime,
                   message_id_header: str | None = None) -> RenderedEmail:
    ctx = content.context()
    html = layout_html(content.kind, ctx)
    text = _layouts.get_template("emails/_text.txt").render(ctx)
    sender_name = _one_line(content.shop.setting("sender_name") or ctx["shop_name"])
    reply_to = _one_line(content.shop.setting("reply_to") or content.shop.email)
    headers = {
        "Message-ID": message_id_header or make_msgid(domain=config.mail_from.rpartition("@")[2]),
        "Date": _date_header(now),
        "From": _from_header(sender_name, config.mail_from),
        "To": recipient,
        "Subject": ctx["subject"],
        "List-Unsubscribe": f"<{ctx['unsubscribe_url']}>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }
    if reply_to:
        headers["Reply-To"] = reply_to
    return RenderedEmail(recipient=recipient, subject=ctx["subject"], html=html, text=text,
                         envelope_from=config.mail_from, headers=headers)


# The same few values for a whole batch; the email package's parser and formatter are slow.
@lru_cache(maxsize=1024)
def _from_header(display_name: str, address: str) -> str:
    return str(Address(display_name=display_name, addr_spec=address))


@lru_cache(maxsize=16)
def _date_header(now: datetime) -> str:
    return format_datetime(now)


def _template_for(session: Session, shop_id: int, template_id: int | None) -> EmailTemplate | None:
    if template_id is None:
        return None
    template = session.get(EmailTemplate, template_id)
    return template if template is not None and template.shop_id == shop_id else None


def _product_block(order_review_url: str | None, product: Product, image_url: str,
                   title: str, sample_url: str) -> ProductBlock:
    """One product with its review link and five star links. `order_review_url` is the order's
    signed review page (made once per email: one signature, not one per star)."""
    if order_review_url is None:  # a sample: no order to review, links go nowhere harmful
        return ProductBlock(title, image_url, sample_url, [(r, sample_url) for r in range(1, 6)])
    link = f"{order_review_url}?{urlencode({'product': product.id})}"
    return ProductBlock(title, image_url, link,
                        [(r, f"{link}&{urlencode({'rating': r})}") for r in range(1, 6)])


def _order_products(session: Session, shop: Shop, order: Order, kind: str,
                    by_gid: Mapping[str, Product] | None) -> list[tuple]:
    if by_gid is None:
        by_gid = products_by_gid(session, order)
    items = reviewable_items(order, shop, by_gid)
    if kind == EmailKind.MEDIA_REQUEST.value:
        # Ask for photos of what they reviewed; fall back to the whole order.
        reviewed = set(session.scalars(select(Review.product_id).where(
            Review.order_id == order.id, Review.shop_id == shop.id)))
        items = [i for i in items if i.product.id in reviewed] or items
    limit = int(shop.setting("max_products_per_email"))
    return [(i.product, i.line_item.image_url or i.product.image_url, i.line_item.title
             or i.product.title) for i in items[:limit]]


def render_message(session: Session, message: Message, config: Config, now: datetime,
                   products_by_gid: Mapping[str, Product] | None = None) -> RenderedEmail:
    """The email of a queued message, for its enrollment's real order. Raises NothingToReview.
    `products_by_gid`: the order's products, when the caller has loaded them already."""
    enrollment = message.enrollment
    order = enrollment.order
    shop = session.get(Shop, message.shop_id)
    template = _template_for(session, shop.id, message.email_template_id)
    kind = template.kind if template is not None else message.kind
    locale = copy.pick_locale(order.customer_locale, shop.locale)
    chosen = _order_products(session, shop, order, kind, products_by_gid)
    if not chosen:
        raise NothingToReview(f"order {order.name} has no reviewable products")
    order_page = review_url(config.app_url, config.secret_key, shop.id, order.id)
    content = Content(
        kind=kind, locale=locale, fields=merchant_fields(template, kind, locale),
        variables=sandbox.Variables(order.customer_first_name, order.customer_last_name,
                                    shop.name or shop.domain, order.name),
        shop=shop,
        brand_color=_color(template.brand_color if template else "", shop.setting("brand_color")),
        logo_url=(template.logo_url if template else "") or shop.setting("logo_url"),
        products=[_product_block(order_page, p, img, title, "")
                  for p, img, title in chosen],
        button_url=order_page,
        links=Links(config.app_url, config.secret_key, shop.id, message.recipient,
                    message_id=message.id, enrollment_id=enrollment.id, locale=locale),
    )
    return _within_size(content, message.recipient, config, now, message.message_id_header)


def _within_size(content: Content, recipient: str, config: Config, now: datetime,
                 message_id_header: str | None = None) -> RenderedEmail:
    """Gmail clips HTML over ~102 KB and hides the rest, footer and unsubscribe link included:
    drop the cheapest products until the email fits (very long titles, many products)."""
    rendered = render_content(content, recipient, config, now, message_id_header)
    while len(rendered.html.encode()) > MAX_HTML_BYTES and len(content.products) > 1:
        content.products = content.products[:-1]
        rendered = render_content(content, recipient, config, now, message_id_header)
    return rendered


def sample_products(session: Session, shop: Shop, count: int) -> list[Product]:
    """Random active catalogue products with an image first, for previews and test sends."""
    return list(session.scalars(
        select(Product).where(Product.shop_id == shop.id, Product.status == "ACTIVE")
        .order_by((Product.image_url == "").asc(), func.random()).limit(count)
    ))


def render_sample(session: Session, shop: Shop, kind: str, fields: dict[str, str],
                  config: Config, now: datetime, *, recipient: str, locale: str,
                  brand_color: str = "", logo_url: str = "",
                  products: list[Product] | None = None) -> RenderedEmail:
    """The editor's preview and Send Test: unsaved fields, catalogue products, a sample customer.
    Links are untracked and point at the app, since there is no order to review."""
    if products is None:
        products = sample_products(session, shop, int(shop.setting("max_products_per_email")))
    merged = copy.default_fields(kind, locale)
    merged.update({k: v for k, v in fields.items() if k in copy.FIELD_NAMES and v.strip()})
    content = Content(
        kind=kind, locale=locale, fields=merged,
        variables=sandbox.Variables("Jane", "Doe", shop.name or shop.domain, "#1001"),
        shop=shop,
        brand_color=_color(brand_color, shop.setting("brand_color")),
        logo_url=logo_url or shop.setting("logo_url"),
        products=[_product_block(None, p, p.image_url, p.title, f"{config.app_url}/")
                  for p in products],
        button_url=f"{config.app_url}/",
        links=Links(config.app_url, config.secret_key, shop.id, recipient, locale=locale),
    )
    return _within_size(content, recipient, config, now)
