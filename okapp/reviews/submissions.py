"""A customer's answers on the review page: what the page shows, what is valid, what is saved.

One page covers one order. Each reviewable product gets at most one review (the database is unique
on order and product), so coming back through the same link edits that review and adds media to it.
Every submission is all or nothing: a bad rating or a refused file stores nothing at all, and the
files already written for it are removed again.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from okapp.models import LineItem, Order, Product, Review, ReviewMedia, ReviewStatus, Shop
from okapp.reviews.media import MediaLimits, MediaRejected, StoredMedia, remove_stored, store_upload
from okapp.sequences.items import products_by_gid, reviewable_items

MAX_TITLE = 150
MAX_BODY = 5000
MAX_NAME = 80


@dataclass
class PageItem:
    """One product on the review page, with the customer's earlier review of it if any."""

    product: Product
    line_item: LineItem
    review: Review | None

    @property
    def image_url(self) -> str:
        url = self.product.image_url or self.line_item.image_url
        return url if url.startswith(("https://", "http://")) else ""


def page_items(session: Session, shop: Shop, order: Order) -> list[PageItem]:
    items = reviewable_items(order, shop, products_by_gid(session, order))
    reviews = {r.product_id: r for r in session.scalars(
        select(Review).where(Review.shop_id == shop.id, Review.order_id == order.id))}
    return [PageItem(i.product, i.line_item, reviews.get(i.product.id)) for i in items]


def default_display_name(order: Order) -> str:
    """`Jane D.`: how a review is signed unless the customer writes something else."""
    first = order.customer_first_name.strip()
    last = order.customer_last_name.strip()
    return f"{first} {last[0]}." if first and last else first


@dataclass
class Upload:
    filename: str
    stream: BinaryIO


@dataclass
class Answer:
    """What the customer sent for one product, as typed (validated by `submit`)."""

    product_id: int
    rating: str = ""
    title: str = ""
    body: str = ""
    uploads: list[Upload] = field(default_factory=list)


@dataclass
class Result:
    errors: dict[str, str] = field(default_factory=dict)  # form field name -> message
    reviews: list[Review] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


# C0 controls other than tab and newline (NUL also breaks PostgreSQL text), and DEL.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def clean_text(value: str, multiline: bool = False) -> str:
    """Customer text is stored as typed, minus control characters; it is escaped when shown."""
    value = _CONTROL.sub("", value.replace("\r\n", "\n").replace("\r", "\n")).strip()
    return value if multiline else " ".join(value.split())


def field_name(kind: str, product_id: int) -> str:
    return f"{kind}-{product_id}"


@dataclass
class _Valid:
    item: PageItem
    rating: int
    title: str
    body: str
    uploads: list[Upload]


def _validate(answers: Iterable[Answer], items: dict[int, PageItem], name: str,
              limits: MediaLimits) -> tuple[list[_Valid], dict[str, str]]:
    chosen: list[_Valid] = []
    errors: dict[str, str] = {}
    for answer in answers:
        item = items.get(answer.product_id)
        if item is None:
            continue  # not a product of this order: nothing of it is read
        pid = answer.product_id
        title, body = clean_text(answer.title), clean_text(answer.body, multiline=True)
        if not answer.rating:
            if title or body or answer.uploads:
                errors[field_name("rating", pid)] = (
                    f"Choose 1 to 5 stars for {item.product.title} to save your review.")
            continue
        rating = int(answer.rating) if answer.rating in ("1", "2", "3", "4", "5") else 0
        if not rating:
            errors[field_name("rating", pid)] = "Choose 1 to 5 stars."
            continue
        if len(title) > MAX_TITLE:
            errors[field_name("title", pid)] = f"Keep the title under {MAX_TITLE} characters."
        if len(body) > MAX_BODY:
            errors[field_name("body", pid)] = f"Keep the review under {MAX_BODY} characters."
        existing = len(item.review.media) if item.review else 0
        if existing + len(answer.uploads) > limits.max_files_per_review:
            errors[field_name("media", pid)] = (
                f"Up to {limits.max_files_per_review} photos and videos per product"
                + (f"; this review already has {existing}." if existing else "."))
        chosen.append(_Valid(item, rating, title, body, answer.uploads))
    if len(clean_text(name)) > MAX_NAME:
        errors["name"] = f"Keep your name under {MAX_NAME} characters."
    if not chosen and not errors:
        errors["form"] = "Choose a star rating for at least one product."
    return chosen, errors


def _store_uploads(chosen: list[_Valid], media_root: Path, limits: MediaLimits,
                   stored: dict[int, list[StoredMedia]]) -> dict[str, str]:
    """Store every upload, or none: the first refusal removes what was already written."""
    for valid in chosen:
        for upload in valid.uploads:
            try:
                stored.setdefault(valid.item.product.id, []).append(
                    store_upload(upload.stream, media_root, limits))
            except MediaRejected as exc:
                remove_stored(media_root, [m for ms in stored.values() for m in ms])
                stored.clear()
                label = clean_text(upload.filename)[:80] or "The file"
                return {field_name("media", valid.item.product.id):
                        f"{label} {exc}. Nothing was saved."}
    return {}


def _save(session: Session, shop: Shop, order: Order, chosen: list[_Valid], name: str,
          stored: dict[int, list[StoredMedia]], now: datetime) -> list[Review]:
    saved = []
    for valid in chosen:
        product_id = valid.item.product.id
        review = session.scalar(select(Review).where(
            Review.order_id == order.id, Review.product_id == product_id))
        new_media = stored.get(product_id, [])
        content = (valid.rating, valid.title, valid.body, name)
        if review is None:
            review = Review(shop_id=shop.id, product_id=product_id, order_id=order.id,
                            email=order.email.lower(), created_at=now)
            session.add(review)
        elif (review.rating, review.title, review.body, review.reviewer_name) == content \
                and not new_media:
            saved.append(review)  # sent again unchanged: no duplicate, no re-moderation
            continue
        # A changed or extended review goes back to moderation before it shows anywhere.
        review.rating, review.title, review.body, review.reviewer_name = content
        review.status = ReviewStatus.PENDING.value
        review.updated_at = now
        for m in new_media:
            review.media.append(ReviewMedia(kind=m.kind, path=m.path, content_type=m.content_type,
                                            size_bytes=m.size_bytes, width=m.width,
                                            height=m.height, created_at=now))
        saved.append(review)
    session.flush()
    return saved


def submit(session: Session, shop: Shop, order: Order, answers: list[Answer], name: str,
           media_root: Path, limits: MediaLimits, now: datetime) -> Result:
    """Validate, store files, save reviews, commit. On any error nothing is kept."""
    items = {item.product.id: item for item in page_items(session, shop, order)}
    chosen, errors = _validate(answers, items, name, limits)
    if errors:
        return Result(errors=errors)
    stored: dict[int, list[StoredMedia]] = {}
    errors = _store_uploads(chosen, media_root, limits, stored)
    if errors:
        return Result(errors=errors)
    display_name = clean_text(name) or default_display_name(order)
    try:
        try:
            reviews = _save(session, shop, order, chosen, display_name, stored, now)
            session.commit()
        except IntegrityError:
            # The same form sent twice at once: the other request created the review first.
            # Once more, now as an edit of that review.
            session.rollback()
            reviews = _save(session, shop, order, chosen, display_name, stored, now)
            session.commit()
    except BaseException:
        session.rollback()
        remove_stored(media_root, [m for ms in stored.values() for m in ms])
        raise
    return Result(reviews=reviews)
