"""Saving reviews without Flask: the race of two identical submissions, and the display name."""

from __future__ import annotations

import io
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from okapp.models import Review
from okapp.reviews.media import MediaLimits
from okapp.reviews.submissions import Answer, Upload, default_display_name, submit
from tests import review_files as files
from tests.factories import make_order, make_product

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def test_a_submission_racing_another_edits_the_review_the_other_created(
        runtime, session, shop, config, monkeypatch):
    product = make_product(session, shop)
    order = make_order(session, shop, products=[product])
    session.commit()
    real_flush = Session.flush
    raced = []

    def flush_after_the_other_request(self, *args, **kwargs):
        # The other request commits its review between our look-up and our insert.
        if self is session and not raced and any(isinstance(o, Review) for o in self.new):
            raced.append(True)
            with runtime.session_scope() as other:
                other.add(Review(shop_id=shop.id, product_id=product.id, order_id=order.id,
                                 email=order.email, rating=1, body="first", created_at=NOW))
        return real_flush(self, *args, **kwargs)

    monkeypatch.setattr(Session, "flush", flush_after_the_other_request)
    result = submit(session, shop, order, [Answer(
        product.id, rating="5", body="second",
        uploads=[Upload("a.jpg", io.BytesIO(files.photo("JPEG")))])], "", config.media_root,
        MediaLimits(), NOW)

    assert raced and result.ok, result.errors
    session.expire_all()
    [review] = session.scalars(select(Review)).all()
    assert (review.rating, review.body) == (5, "second")
    [media] = review.media  # the file stored before the race is kept and attached
    assert (config.media_root / media.path).is_file()


def test_display_name_defaults_to_first_name_and_initial(session, shop):
    order = make_order(session, shop, products=[], customer_first_name="Ana",
                       customer_last_name="de la Cruz")
    assert default_display_name(order) == "Ana d."
    order.customer_last_name = ""
    assert default_display_name(order) == "Ana"
