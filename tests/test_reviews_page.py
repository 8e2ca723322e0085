"""The customer review page: signed links, the form, uploads through HTTP, and refusals."""

from __future__ import annotations

import io
import re
import time
from decimal import Decimal

import pytest
from itsdangerous.timed import TimestampSigner
from PIL import Image
from sqlalchemy import func, select

from okapp.models import Review, ReviewMedia
from okapp.reviews import ratelimit
from okapp.reviews.tokens import make_token
from tests import review_files as files
from tests.factories import make_order, make_product, make_shop


@pytest.fixture
def order(session, shop):
    boots = make_product(session, shop, title="Trail Boots", price=Decimal("120"))
    socks = make_product(session, shop, title="Wool Socks", price=Decimal("12"))
    order = make_order(session, shop, products=[boots, socks], customer_last_name="Doe")
    session.commit()
    return order


@pytest.fixture
def token(config, shop, order):
    return make_token(config.secret_key, shop.id, order.id)


def products(order, session):
    from okapp.sequences.items import products_by_gid

    by_gid = products_by_gid(session, order)
    return [by_gid[li.product_gid] for li in order.line_items]


def review_count(session):
    session.expire_all()
    return session.scalar(select(func.count()).select_from(Review))


def media_files(config):
    root = config.media_root
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def post(client, token, data, files_by_field=None):
    payload = dict(data)
    for field, items in (files_by_field or {}).items():
        payload[field] = [(io.BytesIO(content), name) for name, content in items]
    return client.post(f"/r/{token}", data=payload, content_type="multipart/form-data")


def test_the_page_shows_every_reviewable_product_with_the_clicked_star_chosen(
        client, session, order, token):
    boots, socks = products(order, session)
    response = client.get(f"/r/{token}?product={socks.id}&rating=4")
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "Trail Boots" in html and "Wool Socks" in html
    assert boots.image_url in html
    # The product from the email's star link comes first, with its 4th star checked.
    assert html.index("Wool Socks") < html.index("Trail Boots")
    assert re.search(rf'name="rating-{socks.id}" id="rating-{socks.id}-4" value="4" checked', html)
    assert f'name="rating-{boots.id}" id="rating-{boots.id}-4" value="4">' in html
    # Real radio inputs with labels, a labelled file input, and the suggested signature.
    assert html.count('type="radio"') == 10
    assert f'<label class="rv-star" for="rating-{socks.id}-1">' in html
    assert f'<label for="media-{socks.id}" class="rv-upload-label">' in html
    assert 'value="Jane D."' in html
    assert "Content-Security-Policy" in response.headers
    assert response.headers["Cache-Control"] == "no-store"


def _old_token(monkeypatch, config, shop, order, days):
    monkeypatch.setattr(TimestampSigner, "get_timestamp",
                        lambda self: int(time.time()) - days * 86400)
    token = make_token(config.secret_key, shop.id, order.id)
    monkeypatch.undo()
    return token


def test_bad_links_get_a_friendly_page_with_no_data(client, session, config, shop, order,
                                                   token, monkeypatch):
    other_shop = make_shop(session)
    foreign_order = make_order(session, other_shop, products=[
        make_product(session, other_shop, title="Secret Product")])
    session.commit()
    tampered = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    cases = {
        tampered: (404, "link is not valid"),
        "not-a-token": (404, "link is not valid"),
        _old_token(monkeypatch, config, shop, order, days=181): (410, "has expired"),
        # A genuine signature, but this shop does not own that order.
        make_token(config.secret_key, shop.id, foreign_order.id): (404, "can no longer be"),
        make_token("another-secret-key-" + "y" * 32, shop.id, order.id): (404, "link is not valid"),
    }
    for bad, (status, message) in cases.items():
        for response in (client.get(f"/r/{bad}"), post(client, bad, {"name": "x"})):
            html = response.get_data(as_text=True)
            assert response.status_code == status, bad
            assert message in html
            for secret in ("Trail Boots", "Secret Product", order.name, order.email,
                           foreign_order.name, shop.name, other_shop.name):
                assert secret not in html
    # A link that is still young enough works.
    assert client.get(f"/r/{_old_token(monkeypatch, config, shop, order, 179)}").status_code == 200
    assert review_count(session) == 0


def test_a_link_whose_order_is_gone_shows_nothing(client, session, order, token):
    session.delete(order)
    session.commit()
    response = client.get(f"/r/{token}")
    assert response.status_code == 404
    assert "Trail Boots" not in response.get_data(as_text=True)


def test_a_review_with_a_photo_is_stored_for_shop_product_order_and_email(
        client, session, config, shop, order, token):
    boots, socks = products(order, session)
    response = post(client, token, {
        f"rating-{boots.id}": "5", f"title-{boots.id}": "Great boots",
        f"body-{boots.id}": "Warm and dry.\nWould buy again.", "name": "Jane from Ohio",
    }, {f"media-{boots.id}": [("IMG_0001.HEIC", files.photo("HEIF"))]})
    assert response.status_code == 303
    assert response.headers["Location"].endswith(f"/r/{token}?saved=1")

    review = session.scalars(select(Review)).one()
    assert (review.shop_id, review.product_id, review.order_id, review.email) == (
        shop.id, boots.id, order.id, order.email)
    assert (review.rating, review.title, review.body, review.reviewer_name, review.status) == (
        5, "Great boots", "Warm and dry.\nWould buy again.", "Jane from Ohio", "pending")
    [media] = review.media
    assert (media.kind, media.content_type) == ("photo", "image/jpeg")
    stored = config.media_root / media.path
    assert stored.is_file() and "IMG_0001" not in media.path
    assert not Image.open(stored).getexif()
    # Only the rated product got a review: Socks was left unrated.
    thanks = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "Thank you, your review is saved." in thanks
    assert 'value="5" checked' in thanks and "Great boots" in thanks


def test_sending_again_edits_the_review_and_adds_media_without_duplicates(
        client, session, order, token):
    boots, _ = products(order, session)
    form = {f"rating-{boots.id}": "4", f"body-{boots.id}": "Nice", "name": ""}
    assert post(client, token, form).status_code == 303
    assert post(client, token, form).status_code == 303  # a double click
    assert review_count(session) == 1
    review = session.scalars(select(Review)).one()
    assert review.reviewer_name == "Jane D."  # blank name: the order's first name and initial
    review.status = "published"
    session.commit()

    # Unchanged and sent again: still published, nothing new.
    assert post(client, token, {**form, "name": "Jane D."}).status_code == 303
    session.expire_all()
    assert session.get(Review, review.id).status == "published"

    # Back through the media-request email: the same link adds a video and a photo.
    response = post(client, token, {**form, "name": "Jane D."}, {f"media-{boots.id}": [
        ("clip.mov", files.iso_video(b"qt  ")), ("pic.png", files.photo("PNG"))]})
    assert response.status_code == 303
    session.expire_all()
    review = session.scalars(select(Review)).one()
    assert sorted(m.kind for m in review.media) == ["photo", "video"]
    assert review.status == "pending"  # new media goes back to moderation
    assert review_count(session) == 1


def test_stars_are_required_for_a_written_review_and_input_is_kept(client, session, order,
                                                                    token, config):
    boots, socks = products(order, session)
    response = post(client, token, {
        f"rating-{boots.id}": "5", f"title-{socks.id}": "Cosy", f"body-{socks.id}": "So warm",
        "name": "Jane"}, {f"media-{boots.id}": [("a.jpg", files.photo("JPEG"))]})
    html = response.get_data(as_text=True)
    assert response.status_code == 422
    assert "Choose 1 to 5 stars for Wool Socks to save your review." in html
    assert 'value="Cosy"' in html and ">So warm</textarea>" in html
    assert re.search(rf'id="rating-{boots.id}-5" value="5" checked', html)
    assert "Please choose your photos and videos again." in html
    assert review_count(session) == 0 and media_files(config) == []

    for bad in ("0", "6", "five", "4.5"):
        response = post(client, token, {f"rating-{boots.id}": bad})
        assert response.status_code == 422 and "Choose 1 to 5 stars." in response.get_data(
            as_text=True)
    response = post(client, token, {"name": "Jane"})
    assert "Choose a star rating for at least one product." in response.get_data(as_text=True)
    assert review_count(session) == 0


@pytest.mark.parametrize("name, content, message", [
    ("holiday.jpg", files.renamed_executable(), "holiday.jpg is not a supported photo or video"),
    ("cute.svg", files.svg_with_script(), "cute.svg is not a supported photo or video"),
    ("fake.jpg", files.html_disguised_as_jpeg(), "fake.jpg could not be read as a photo"),
    ("bomb.png", files.decompression_bomb(), "bomb.png has more pixels than the 50 megapixel"),
    ("huge.jpg", files.photo("JPEG") + b"\0" * (1024 * 1024 + 1),
     "huge.jpg is larger than the 1 MB limit"),
])
def test_malicious_uploads_are_refused_with_a_message_and_nothing_is_stored(
        client, session, config, order, token, name, content, message):
    config.review_max_photo_mb = 1
    boots, socks = products(order, session)
    response = post(client, token, {
        f"rating-{boots.id}": "5", f"body-{boots.id}": "ok", f"rating-{socks.id}": "4",
    }, {
        f"media-{socks.id}": [("fine.png", files.photo("PNG"))],  # stored first, then removed
        f"media-{boots.id}": [(name, content)],
    })
    html = response.get_data(as_text=True)
    assert response.status_code == 422
    assert message in html and "Nothing was saved." in html
    assert 'aria-invalid="true"' in html
    assert review_count(session) == 0
    assert session.scalar(select(func.count()).select_from(ReviewMedia)) == 0
    assert media_files(config) == []


def test_html_and_script_in_review_text_are_stored_as_text_and_shown_escaped(
        client, session, order, token):
    boots, _ = products(order, session)
    evil = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    response = post(client, token, {f"rating-{boots.id}": "1", f"title-{boots.id}": evil,
                                    f"body-{boots.id}": evil + "\x00", "name": evil})
    assert response.status_code == 303
    review = session.scalars(select(Review)).one()
    assert review.title == review.body == review.reviewer_name == evil  # NUL dropped, rest as typed
    html = client.get(f"/r/{token}").get_data(as_text=True)
    assert "<script>alert" not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html


def test_too_long_text_is_refused_not_cut(client, session, order, token):
    boots, _ = products(order, session)
    response = post(client, token, {f"rating-{boots.id}": "3", f"title-{boots.id}": "t" * 151,
                                    f"body-{boots.id}": "b" * 5001})
    html = response.get_data(as_text=True)
    assert response.status_code == 422
    assert "Keep the title under 150 characters." in html
    assert "Keep the review under 5000 characters." in html
    assert review_count(session) == 0


def test_submissions_are_rate_limited_per_link_and_per_address(client, session, shop, order,
                                                                token, config, monkeypatch):
    monkeypatch.setattr(ratelimit, "PER_LINK", ratelimit.Limit("review-link", 3, 3600))
    monkeypatch.setattr(ratelimit, "PER_ADDRESS", ratelimit.Limit("review-address", 5, 3600))
    boots, _ = products(order, session)
    form = {f"rating-{boots.id}": "5"}
    for _ in range(3):
        assert post(client, token, form).status_code == 303
    response = post(client, token, form)  # 4th on this link
    assert response.status_code == 429
    assert 0 < int(response.headers["Retry-After"]) <= 3600
    assert "Too many submissions" in response.get_data(as_text=True)

    # Another order's link from the same address: the address has one submission left.
    other = make_order(session, shop, products=[boots])
    session.commit()
    other_token = make_token(config.secret_key, shop.id, other.id)
    assert post(client, other_token, {f"rating-{boots.id}": "4"}).status_code == 303
    assert post(client, other_token, {f"rating-{boots.id}": "4"}).status_code == 429
    # From another address that link still works; the first link stays blocked everywhere.
    elsewhere = {"REMOTE_ADDR": "203.0.113.9"}
    assert client.post(f"/r/{other_token}", data={f"rating-{boots.id}": "3"},
                       environ_base=elsewhere).status_code == 303
    assert client.post(f"/r/{token}", data=form, environ_base=elsewhere).status_code == 429
    assert review_count(session) == 2
    session.expire_all()
    assert {r.rating for r in session.scalars(select(Review))} == {5, 3}


def test_media_is_served_with_safe_headers(client, session, config, order, token):
    boots, _ = products(order, session)
    post(client, token, {f"rating-{boots.id}": "5"},
         {f"media-{boots.id}": [("p.webp", files.photo("WEBP"))]})
    media = session.scalars(select(ReviewMedia)).one()
    response = client.get(f"/media/{media.path}")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "image/webp"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Content-Disposition"] == "inline"
    assert response.headers["Content-Security-Policy"].startswith("default-src 'none'")
    assert response.data == (config.media_root / media.path).read_bytes()
    # Only files the database knows; no walking out of the media root.
    (config.media_root / "reviews" / "planted.html").write_text("<script>x</script>")
    for path in ("reviews/planted.html", "../okapp.db", "reviews/../../okapp.db", "nope.jpg"):
        assert client.get(f"/media/{path}").status_code == 404


def test_a_request_over_the_upload_cap_is_refused_whole(app, client, session, config, order,
                                                         token):
    app.config["MAX_CONTENT_LENGTH"] = 64 * 1024
    boots, _ = products(order, session)
    response = post(client, token, {f"rating-{boots.id}": "5"}, {f"media-{boots.id}": [
        ("big.png", files.photo("PNG", size=(400, 400)) + b"\0" * 100_000)]})
    assert response.status_code == 413
    assert "too large to send together" in response.get_data(as_text=True)
    assert review_count(session) == 0 and media_files(config) == []
