"""A customer on a phone: from the email's star link to a saved review with a photo (375 px); and
the merchant moderating it on the Reviews page."""

from __future__ import annotations

import os
import time
from decimal import Decimal
from io import BytesIO

from sqlalchemy import select

from okapp.models import Review
from okapp.reviews.tokens import review_url
from tests import review_files as files
from tests.factories import make_order, make_product

PHONE = {"viewport": {"width": 375, "height": 740}, "device_scale_factor": 2, "is_mobile": True,
         "has_touch": True}


def _arrange(session, shop):
    boots = make_product(session, shop, title="Trail Boots", price=Decimal("120"),
                         image_url="")
    socks = make_product(session, shop, title="Wool Socks with a rather long product name",
                         price=Decimal("12"), image_url="")
    order = make_order(session, shop, products=[boots, socks], customer_last_name="Doe")
    session.commit()
    return order, boots, socks


def _wait_loaded(img, timeout: float = 10) -> None:
    """Until the image has decoded. (Not `wait_for_function`: its string predicate is compiled
    in the page, which the page's CSP rightly refuses as eval.)"""
    deadline = time.monotonic() + timeout
    while not img.evaluate("el => el.complete && el.naturalWidth > 0"):
        assert time.monotonic() < deadline, "the image never loaded"
        time.sleep(0.05)


def test_a_phone_user_reviews_with_a_photo_from_a_star_link(browser, live_server, config,
                                                            session, shop, tmp_path):
    order, boots, socks = _arrange(session, shop)
    # The link a 5-star click in the review-request email opens.
    url = review_url(live_server, config.secret_key, shop.id, order.id, boots.id, 5)
    context = browser.new_context(**PHONE)
    context.set_default_timeout(10_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(url)

    assert page.locator(f"#rating-{boots.id}-5").is_checked()
    words = page.evaluate(f"""getComputedStyle(document.querySelector(
        '#product-{boots.id} .rv-star-words'), '::after').content""")
    assert words == '"Excellent"'  # the chosen rating in words, drawn by CSS alone
    # The chosen star and those before it are filled; the radios are the real inputs.
    colors = page.eval_on_selector_all(f"#product-{boots.id} .rv-star",
                                       "els => els.map(e => getComputedStyle(e).color)")
    assert len(set(colors)) == 1
    # Mobile first: nothing wider than the phone.
    assert page.evaluate("document.documentElement.scrollWidth") <= 375

    page.locator(f"#title-{boots.id}").fill("Dry feet all winter")
    page.locator(f"#body-{boots.id}").fill("Comfortable <b>from day one</b>.")
    photo = tmp_path / "IMG_2041.jpg"
    photo.write_bytes(files.photo("JPEG", size=(1200, 900)))
    page.set_input_files(f"#media-{boots.id}", str(photo))
    preview = page.locator(f"#media-{boots.id}-previews li")
    assert preview.count() == 1 and "IMG_2041.jpg" in preview.inner_text()
    _wait_loaded(page.locator(f"#media-{boots.id}-previews img"))

    # Words for the socks but no stars: refused, everything typed and the chosen photo stay.
    page.locator(f"#title-{socks.id}").fill("Cosy")
    with page.expect_request(lambda r: r.method == "POST") as sent:
        page.get_by_role("button", name="Submit review").click()
    assert sent.value.headers.get("x-requested-with") == "XMLHttpRequest"  # the upload with progress
    summary = page.locator("#rv-errors")
    summary.wait_for()
    assert "Choose 1 to 5 stars for Wool Socks" in summary.inner_text()
    assert "choose your photos" not in summary.inner_text()  # kept, so not asked again
    assert page.evaluate("document.activeElement.id") == "rv-errors"
    assert page.locator(f"#title-{socks.id}").input_value() == "Cosy"
    assert page.evaluate(f"document.getElementById('media-{boots.id}').files.length") == 1
    assert page.locator(f"#media-{boots.id}-previews li").count() == 1

    # Keyboard: the star radios are one group, arrows move through it.
    page.focus(f"#rating-{socks.id}-1")
    page.keyboard.press("Space")
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowRight")
    assert page.locator(f"#rating-{socks.id}-3").is_checked()

    if os.environ.get("REVIEW_SCREENSHOTS"):
        page.screenshot(path=os.path.join(os.environ["REVIEW_SCREENSHOTS"], "form.png"),
                        full_page=True)
    page.get_by_role("button", name="Submit review").click()
    page.wait_for_url("**saved=1")
    banner = page.locator("#rv-saved")
    assert "Thank you, your review is saved." in banner.inner_text()
    assert page.evaluate("document.activeElement.id") == "rv-saved"
    # The photo shows on the page it came back to, served by the media route.
    thumb = page.locator(f"#product-{boots.id} .rv-thumbs img").first
    thumb.wait_for()
    _wait_loaded(thumb)
    if os.environ.get("REVIEW_SCREENSHOTS"):
        page.screenshot(path=os.path.join(os.environ["REVIEW_SCREENSHOTS"], "saved.png"),
                        full_page=True)
    assert errors == []
    context.close()

    session.expire_all()
    reviews = {r.product_id: r for r in session.scalars(select(Review))}
    assert reviews[boots.id].rating == 5 and reviews[socks.id].rating == 3
    assert reviews[socks.id].title == "Cosy"
    assert reviews[boots.id].title == "Dry feet all winter"
    assert reviews[boots.id].body == "Comfortable <b>from day one</b>."
    assert reviews[boots.id].reviewer_name == "Jane D."
    [media] = reviews[boots.id].media
    assert (media.kind, media.content_type, media.width, media.height) == (
        "photo", "image/jpeg", 900, 1200)  # turned upright from its EXIF, which is gone


def test_without_javascript_the_form_still_works(browser, live_server, config, session, shop,
                                                 tmp_path):
    order, boots, _ = _arrange(session, shop)
    context = browser.new_context(java_script_enabled=False, **PHONE)
    context.set_default_timeout(10_000)
    page = context.new_page()
    page.goto(review_url(live_server, config.secret_key, shop.id, order.id))
    page.locator(f"label[for=rating-{boots.id}-4]").click()
    bad = tmp_path / "photo.jpg"
    bad.write_bytes(files.renamed_executable())
    page.set_input_files(f"#media-{boots.id}", str(bad))
    page.get_by_role("button", name="Submit review").click()
    assert "photo.jpg is not a supported photo or video" in page.locator("#rv-errors").inner_text()
    assert page.locator(f"#rating-{boots.id}-4").is_checked()  # the rating survived the refusal
    good = tmp_path / "photo.png"
    good.write_bytes(files.photo("PNG"))
    page.set_input_files(f"#media-{boots.id}", str(good))
    page.get_by_role("button", name="Submit review").click()
    page.wait_for_url("**saved=1")
    context.close()
    session.expire_all()
    [review] = session.scalars(select(Review)).all()
    assert review.rating == 4 and len(review.media) == 1


def test_the_merchant_publishes_and_filters_reviews_in_place(page, live_server, config, session,
                                                            shop, client):
    order, boots, socks = _arrange(session, shop)
    token_url = review_url("", config.secret_key, shop.id, order.id)
    client.post(token_url, data={
        f"rating-{boots.id}": "5", f"title-{boots.id}": "<i>Dry</i> feet",
        f"media-{boots.id}": [(BytesIO(files.photo("JPEG")), "a.jpg")],
        f"rating-{socks.id}": "2", f"body-{socks.id}": "Itchy."},
        content_type="multipart/form-data")
    page.goto("/reviews")
    counts = page.locator("#review-counts")
    assert "2\nReviews" in counts.inner_text() and "0\nPublished" in counts.inner_text()
    assert page.locator(".rv-review").count() == 2
    boots_review = page.locator(".rv-review", has_text="Dry")
    assert boots_review.locator("h3").inner_text() == "<i>Dry</i> feet"  # shown as text
    _wait_loaded(page.locator(".rv-media img").first)

    url_before = page.url
    boots_review.get_by_role("button", name="Publish").click()
    boots_review.locator(".badge", has_text="Published").wait_for()
    assert "1\nPublished" in counts.inner_text() and "1\nPending" in counts.inner_text()
    assert page.url == url_before  # updated in place by htmx, no reload

    page.select_option("#f-status", "published")
    page.wait_for_url("**status=published")
    page.locator(".rv-review").nth(1).wait_for(state="detached")
    assert page.locator(".rv-review").count() == 1
    if os.environ.get("REVIEW_SCREENSHOTS"):
        page.screenshot(path=os.path.join(os.environ["REVIEW_SCREENSHOTS"], "admin.png"),
                        full_page=True)
    session.expire_all()
    assert {r.product_id: r.status for r in session.scalars(select(Review))} == {
        boots.id: "published", socks.id: "pending"}
