"""The whole path: a review request goes out by SMTP, the customer taps a star in it, reviews on
the page (with or without a photo), and the Photo Reminder SPLIT then takes the right branch."""

from __future__ import annotations

import html
import io
import re
from datetime import timedelta
from decimal import Decimal
from urllib.parse import urlsplit

import pytest
from rq import SimpleWorker
from sqlalchemy import select

from okapp.models import EmailKind, Enrollment, EnrollmentState, Message, MessageState, Review
from okapp.sequences.recruit import consider_order
from okapp.sequences.scheduler import tick
from tests import review_files as files
from tests.engine_support import NOW, messages, running
from tests.factories import make_order, make_product
from tests.smtp_sink import smtp_sink_fixture  # noqa: F401  (the `smtp_sink` fixture)


class _Worker(SimpleWorker):
    """RQ's worker without its remote-command pubsub thread: with redis-py 8 stopping that
    thread can wait out its 60 s poll, which would only slow the test down."""

    def subscribe(self):
        pass


def work(runtime) -> None:
    _Worker([runtime.queue("sends")], connection=runtime.redis).work(burst=True)


def _star_link(email, rating: int) -> str:
    body = email.get_body(("html",)).get_content()
    links = dict((label, html.unescape(href)) for href, label in re.findall(
        r'<a href="([^"]+)" title="[^"]*" aria-label="(Rate \d out of 5)"', body))
    return links[f"Rate {rating} out of 5"]


def _path(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


@pytest.mark.parametrize("case, expected_next_email", [
    ("no review", EmailKind.REMINDER.value),
    ("5 stars, no media", EmailKind.MEDIA_REQUEST.value),
    ("5 stars with a photo", None),
    ("2 stars", None),
])
def test_star_link_to_stored_review_then_the_split_branch(
        case, expected_next_email, smtp_sink, config, runtime, session, shop, client):
    config.smtp_url = smtp_sink.url
    running(session, shop, "review_request_photo_reminder")
    boots = make_product(session, shop, title="Trail Boots", price=Decimal("120"))
    order = make_order(session, shop, products=[boots],
                       fulfilled_at=NOW - timedelta(days=7, hours=1))
    enrollment = consider_order(session, order, NOW - timedelta(days=7))
    session.commit()

    # The review request goes out through a real SMTP server.
    tick(runtime, NOW)
    work(runtime)
    [request_email] = smtp_sink.messages()
    assert request_email["To"] == order.email

    if case != "no review":
        rating = 2 if case == "2 stars" else 5
        # The customer taps a star: the tracked link redirects to the review page for the order.
        tracked = client.get(_path(_star_link(request_email, rating)))
        assert tracked.status_code == 302
        page_url = _path(tracked.headers["Location"])
        assert f"product={boots.id}&rating={rating}" in page_url
        page = client.get(page_url).get_data(as_text=True)
        assert f'id="rating-{boots.id}-{rating}" value="{rating}" checked' in page
        form = {f"rating-{boots.id}": str(rating), f"body-{boots.id}": "Honest words", "name": ""}
        if case == "5 stars with a photo":
            form[f"media-{boots.id}"] = [(io.BytesIO(files.photo("JPEG")), "boots.jpg")]
        saved = client.post(page_url.split("?")[0], data=form,
                            content_type="multipart/form-data")
        assert saved.status_code == 303
        review = session.scalars(select(Review)).one()
        assert (review.shop_id, review.order_id, review.product_id, review.email,
                review.rating) == (shop.id, order.id, boots.id, order.email, rating)
        assert len(review.media) == (1 if case == "5 stars with a photo" else 0)
        assert all((config.media_root / m.path).is_file() for m in review.media)

    # Time passes to the SPLIT after the request; the engine reads the stored review.
    session.expire_all()
    due = session.get(Enrollment, enrollment.id).due_at
    assert due is not None and due > NOW
    tick(runtime, due)
    work(runtime)
    sent_after = [m.kind for m in messages(session, state=MessageState.SENT.value)][1:]
    assert sent_after == ([expected_next_email] if expected_next_email else [])
    emails = smtp_sink.messages()
    assert len(emails) == (2 if expected_next_email else 1)
    if expected_next_email is None:
        session.expire_all()
        assert session.get(Enrollment, enrollment.id).state == EnrollmentState.DONE.value
    if expected_next_email == EmailKind.MEDIA_REQUEST.value:
        # The media request links back to the same review page, where photos can be added.
        body = emails[1].get_body(("html",)).get_content()
        targets = {client.get(_path(html.unescape(href))).headers.get("Location", "")
                   for href in re.findall(r'href="([^"]+/e/c/[^"]+)"', body)}
        [review_page] = {t for t in targets if "/r/" in t and "?" not in t}
        landing = client.get(_path(review_page)).get_data(as_text=True)
        assert "Add photos or videos" in landing and "Honest words" in landing
    assert session.scalar(select(Message.id).where(Message.state == "failed")) is None
