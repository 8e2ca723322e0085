"""The merchant Reviews page: list, filters, counts, publish/reject, all scoped to the shop."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import select

from okapp.models import Review, ReviewMedia
from tests.factories import NOW, make_order, make_product, make_shop

HX = {"HX-Request": "true"}


def add_review(session, shop, rating, media=0, status="pending", age_days=0, **kw):
    product = make_product(session, shop)
    order = make_order(session, shop, products=[product])
    review = Review(shop_id=shop.id, product_id=product.id, order_id=order.id, email=order.email,
                    rating=rating, status=status, reviewer_name="Jane D.",
                    created_at=NOW - timedelta(days=age_days), **kw)
    for i in range(media):
        review.media.append(ReviewMedia(kind="photo", path=f"reviews/aa/m{rating}{i}{order.id}.jpg",
                                        content_type="image/jpeg", size_bytes=10))
    session.add(review)
    session.flush()
    return review


@pytest.fixture
def reviews(session, shop):
    made = {
        "five_media": add_review(session, shop, 5, media=2, title="Love it", age_days=1),
        "five_plain": add_review(session, shop, 5, body="Great\nsecond line", age_days=2),
        "two": add_review(session, shop, 2, body="Broke quickly", status="published", age_days=3),
        "one_rejected": add_review(session, shop, 1, body="spam spam", status="rejected",
                                   age_days=4),
    }
    other = make_shop(session, name="Rival Shop")
    made["foreign"] = add_review(session, other, 4, body="Other shop's review", title="Rival")
    session.commit()
    return made


def ids_on(html):
    return [int(n) for n in re.findall(r'<article class="card rv-review" id="review-(\d+)"', html)]


def test_the_page_needs_a_merchant(client):
    assert client.get("/reviews").status_code == 401
    assert client.post("/reviews/1/status", data={"status": "published"}).status_code == 401


def test_lists_the_shops_reviews_newest_first_with_counts(merchant, reviews):
    response = merchant.get("/reviews")
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    r = reviews
    assert ids_on(html) == [r["five_media"].id, r["five_plain"].id, r["two"].id,
                            r["one_rejected"].id]
    assert "Other shop" not in html and "Rival" not in html
    # Counts: 4 reviews, 2 pending, 1 published, 1 rejected, 1 with media, average 3.2.
    figures = re.findall(r'<div class="value">([^<]+)</div><div class="label">([^<]+)</div>', html)
    assert figures == [("4", "Reviews"), ("2", "Pending"), ("1", "Published"), ("1", "Rejected"),
                       ("1", "With photos or videos"), ("3.2", "Average rating")]
    assert 'aria-label="5 out of 5 stars"' in html
    assert html.count(f'src="/media/{r["five_media"].media[0].path}"') == 1
    assert f'Order {r["two"].order_id}' not in html  # order names, not ids
    assert '<a href="/reviews" aria-current="page">Reviews</a>' in html  # in the navigation


@pytest.mark.parametrize("query, expected", [
    ("rating=5", ["five_media", "five_plain"]),
    ("media=with", ["five_media"]),
    ("media=without", ["five_plain", "two", "one_rejected"]),
    ("status=published", ["two"]),
    ("status=rejected", ["one_rejected"]),
    ("rating=5&media=without&status=pending", ["five_plain"]),
    ("rating=3", []),
    ("rating=9&status=bogus&media=x&page=abc", ["five_media", "five_plain", "two", "one_rejected"]),
])
def test_filters(merchant, reviews, query, expected):
    response = merchant.get(f"/reviews?{query}", headers=HX)
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "<html" not in html  # htmx gets the list fragment only
    assert ids_on(html) == [reviews[name].id for name in expected]
    if not expected:
        assert "No reviews match these filters" in html


def test_publish_and_reject_with_htmx_update_the_row_and_the_counts(merchant, session, reviews):
    review = reviews["five_plain"]
    response = merchant.post(f"/reviews/{review.id}/status", data={"status": "published"},
                             headers=HX)
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert ids_on(html) == [review.id]
    assert "Published</span>" in html and ">Reject</button>" in html and ">Publish<" not in html
    assert 'id="review-counts" hx-swap-oob="true"' in html
    assert '<div class="value">2</div><div class="label">Published</div>' in html
    session.expire_all()
    assert session.get(Review, review.id).status == "published"

    # Without JavaScript: a plain form post, then back to the filtered list.
    response = merchant.post(f"/reviews/{review.id}/status",
                             data={"status": "rejected", "next": "/reviews?rating=5"})
    assert response.status_code == 303 and response.headers["Location"] == "/reviews?rating=5"
    session.expire_all()
    assert session.get(Review, review.id).status == "rejected"
    # `next` never leaves the Reviews page.
    response = merchant.post(f"/reviews/{review.id}/status",
                             data={"status": "pending", "next": "//evil.example/reviews"})
    assert response.headers["Location"] == "/reviews"


def test_another_shops_review_cannot_be_moderated(merchant, session, reviews):
    foreign = reviews["foreign"]
    assert merchant.post(f"/reviews/{foreign.id}/status", data={"status": "published"},
                         headers=HX).status_code == 404
    assert merchant.post(f"/reviews/{reviews['two'].id}/status",
                         data={"status": "deleted"}).status_code == 400
    session.expire_all()
    assert session.get(Review, foreign.id).status == "pending"


def test_customer_text_is_escaped_on_the_merchant_page(merchant, session, shop):
    evil = "<script>alert('merchant')</script><b onmouseover=x>hi</b>"
    add_review(session, shop, 3, title=evil, body=evil)
    review = session.scalars(select(Review)).one()
    review.reviewer_name = evil
    session.commit()
    html = merchant.get("/reviews").get_data(as_text=True)
    assert "<script>alert" not in html and "<b onmouseover" not in html
    assert html.count("&lt;script&gt;alert(&#39;merchant&#39;)&lt;/script&gt;") == 3


def test_paging(merchant, session, shop):
    for i in range(27):
        add_review(session, shop, 4, age_days=i)
    session.commit()
    first = merchant.get("/reviews").get_data(as_text=True)
    second = merchant.get("/reviews?page=2").get_data(as_text=True)
    assert len(ids_on(first)) == 25 and len(ids_on(second)) == 2
    assert "page 1 of 2" in first and 'href="/reviews?page=2"' in first
    assert not set(ids_on(first)) & set(ids_on(second))
