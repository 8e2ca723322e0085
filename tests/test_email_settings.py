"""Settings: sender name, reply-to, send window, postal address, blocklist with CSV import/export."""

from __future__ import annotations

import csv
import io

from sqlalchemy import select

from okapp.emails.suppression import suppress, suppression_reason
from okapp.models import Shop, Suppression
from tests.factories import NOW, make_shop

HX = {"HX-Request": "true"}


def _form(**overrides) -> dict:
    form = {"sender_name": "Acme Reviews", "reply_to": "care@acme.example",
            "postal_address": "1 Main St, Springfield", "send_window_start": "08:30",
            "send_window_end": "19:00", "min_days_between_emails": "5",
            "max_products_per_email": "3", "not_arrived_delay_days": "7",
            "delivery_fallback_days": "14", "exclude_product_tag": "no-review",
            "brand_color": "#008060", "logo_url": ""}
    form.update(overrides)
    return form


def test_settings_are_saved_over_the_defaults(merchant, session, shop):
    assert b"Sender name" in merchant.get("/settings").data
    response = merchant.post("/settings", data=_form(), headers=HX)
    assert response.status_code == 200 and "Settings saved" in response.headers["HX-Trigger"]
    session.expire_all()
    saved = session.get(Shop, shop.id)
    # Only what differs from the defaults is stored.
    assert saved.settings == {"sender_name": "Acme Reviews", "reply_to": "care@acme.example",
                              "postal_address": "1 Main St, Springfield",
                              "send_window_start": "08:30", "send_window_end": "19:00",
                              "max_products_per_email": 3}
    assert saved.setting("send_window_end") == "19:00"


def test_invalid_settings_are_refused_and_the_input_kept(merchant, session, shop):
    response = merchant.post("/settings", headers=HX, data=_form(
        reply_to="not an address", send_window_start="21:00", send_window_end="08:00",
        max_products_per_email="50", sender_name="Typed name", brand_color="red"))
    assert response.status_code == 422
    text = response.get_data(as_text=True)
    assert "Enter one email address" in text
    assert "must end after it starts" in text
    assert "from 1 to 10" in text and "hex colour" in text
    assert 'value="Typed name"' in text and 'value="not an address"' in text
    session.expire_all()
    assert session.get(Shop, shop.id).settings == {}


def test_sender_name_cannot_inject_headers(merchant, session, shop):
    merchant.post("/settings", headers=HX,
                  data=_form(sender_name="Acme\r\nBcc: everyone@example.com"))
    session.expire_all()
    assert session.get(Shop, shop.id).setting("sender_name") == "Acme Bcc: everyone@example.com"


def test_blocklist_add_remove_and_domains(merchant, session, shop):
    assert merchant.post("/settings/blocklist", data={"entry": "*@Spam.example"},
                         headers=HX).status_code == 200
    assert suppression_reason(session, shop.id, "anyone@spam.example") == "blocklist"
    refused = merchant.post("/settings/blocklist", data={"entry": "nonsense"}, headers=HX)
    assert refused.status_code == 422 and b'value="nonsense"' in refused.data
    suppress(session, shop.id, "left@example.com", "unsubscribe", NOW)
    session.commit()
    rows = {s.address: s for s in session.scalars(select(Suppression))}
    # An unsubscribe is the customer's choice: the merchant cannot remove it.
    merchant.post(f"/settings/blocklist/{rows['left@example.com'].id}/delete", headers=HX)
    merchant.post(f"/settings/blocklist/{rows['*@spam.example'].id}/delete", headers=HX)
    session.expire_all()
    assert [s.address for s in session.scalars(select(Suppression))] == ["left@example.com"]


def test_blocklist_is_per_shop(merchant, session, shop):
    other = make_shop(session)
    suppress(session, other.id, "x@example.com", "blocklist", NOW)
    session.commit()
    their_row = session.scalar(select(Suppression.id))
    page = merchant.get("/settings").get_data(as_text=True)
    assert "x@example.com" not in page
    merchant.post(f"/settings/blocklist/{their_row}/delete", headers=HX)
    assert session.scalar(select(Suppression.id)) == their_row
    assert "x@example.com" not in merchant.get("/settings/blocklist.csv").get_data(as_text=True)


def test_csv_import_keeps_the_valid_rows_and_reports_the_rest(merchant, session, shop):
    suppress(session, shop.id, "already@example.com", "unsubscribe", NOW)
    session.commit()
    body = ("email,note\n"
            "Jane@Example.com,vip\n"
            "*@competitor.example\n"
            "already@example.com\n"
            "not-an-address\n"
            "\n"
            "jane@example.com\n")
    response = merchant.post("/settings/blocklist/import", headers=HX,
                             data={"file": (io.BytesIO(body.encode()), "list.csv")},
                             content_type="multipart/form-data")
    assert response.status_code == 200
    text = response.get_data(as_text=True)
    assert "2 added, 1 already blocked, 1 not valid" in text and "line 5: not-an-address" in text
    addresses = set(session.scalars(select(Suppression.address).where(
        Suppression.shop_id == shop.id)))
    assert addresses == {"jane@example.com", "*@competitor.example", "already@example.com"}

    exported = merchant.get("/settings/blocklist.csv")
    assert exported.mimetype == "text/csv"
    rows = list(csv.reader(io.StringIO(exported.get_data(as_text=True))))
    assert rows[0] == ["email", "reason", "since"]
    assert {(r[0], r[1]) for r in rows[1:]} == {
        ("*@competitor.example", "blocklist"), ("already@example.com", "unsubscribe"),
        ("jane@example.com", "blocklist")}
    # The export reads back in as it is: nothing new, nothing invalid.
    again = merchant.post("/settings/blocklist/import", headers=HX,
                          data={"file": (io.BytesIO(exported.data), "export.csv")},
                          content_type="multipart/form-data")
    assert "0 added, 3 already blocked." in again.get_data(as_text=True)


def test_csv_import_refuses_a_file_that_is_not_text(merchant, session, shop):
    response = merchant.post("/settings/blocklist/import", headers=HX,
                             data={"file": (io.BytesIO(b"\xff\xfe\x00bad"), "x.csv")},
                             content_type="multipart/form-data")
    assert response.status_code == 422 and b"UTF-8" in response.data
    assert session.scalar(select(Suppression.id)) is None
