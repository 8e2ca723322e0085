"""A merchant using the Sequences pages in Chromium: create, edit every block, start, stop."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from playwright.sync_api import Page, expect
from sqlalchemy import delete, select

from okapp.models import Block, Sequence, SequenceStatus
from okapp.sequences.journal import bump
from okapp.sequences.templates import TEMPLATES, Spec
from okapp.sequences.timing import shop_today
from tests.browser.conftest import open_page
from tests.factories import make_order


def count_blocks(chain: list[Spec]) -> int:
    return sum(1 + sum(count_blocks(c) for c in spec.branches.values()) for spec in chain)


def create_from_template(page: Page, template_name: str, name: str | None = None) -> int:
    """Sequences page → + New Sequence → pick a template → Create Sequence; returns the id."""
    page.goto("/sequences")
    page.get_by_role("link", name="+ New Sequence").first.click()
    dialog = page.locator("dialog#modal")
    expect(dialog).to_be_visible()
    dialog.get_by_role("radio", name=template_name, exact=True).check()
    name_field = dialog.get_by_label("Name")
    expect(name_field).to_have_value(template_name)  # prefilled from the template
    if name:
        name_field.fill(name)
    dialog.get_by_role("button", name="Create Sequence").click()
    page.wait_for_url(re.compile(r"/sequences/\d+$"))
    return int(page.url.rsplit("/", 1)[1])


def test_create_a_sequence_from_each_template(page: Page, session, shop):
    for template in TEMPLATES.values():
        sequence_id = create_from_template(page, template.name)
        expect(page.get_by_role("heading", level=1)).to_have_text(template.name)
        expect(page.locator(".badge-draft")).to_have_text("Draft")
        # The flow is drawn: one card per block of the template, SPLIT branches labelled.
        expect(page.locator("#flow .block")).to_have_count(count_blocks(template.build()))
        sequence = session.get(Sequence, sequence_id)
        session.refresh(sequence)
        assert (sequence.shop_id, sequence.template, sequence.status) == (
            shop.id, template.key, "draft")
    expect(page.locator("#flow .flow-branch-label").first).to_have_text("No review")
    # The list shows all four with their status and counts.
    page.goto("/sequences")
    rows = page.locator("table tbody tr")
    expect(rows).to_have_count(4)
    expect(rows.first.locator("td").nth(1)).to_have_text("Draft")


def test_a_typed_name_wins_over_the_template_name(page: Page, session):
    sequence_id = create_from_template(page, "Review Request with Reminder", "Autumn <reviews>")
    expect(page.get_by_role("heading", level=1)).to_have_text("Autumn <reviews>")
    assert session.get(Sequence, sequence_id).name == "Autumn <reviews>"


def open_block(page: Page, block_id: int):
    page.locator(f"#block-{block_id}-open").click()
    dialog = page.locator("dialog#modal")
    expect(dialog).to_be_visible()
    return dialog


def test_open_and_save_every_editable_block(page: Page, session, shop):
    sequence_id = create_from_template(page, "Review Request with Two Reminders")
    blocks = session.scalars(
        select(Block).where(Block.sequence_id == sequence_id).order_by(Block.position)).all()
    today = shop_today(shop, datetime.now(UTC))
    for block in blocks:
        dialog = open_block(page, block.id)
        if block.kind == "split":
            # SPLIT explains itself and has nothing to save; Escape closes it, focus comes back.
            expect(dialog).to_contain_text("Not reviewed")
            expect(dialog.get_by_role("button", name="Save")).to_have_count(0)
            page.keyboard.press("Escape")
            expect(dialog).to_be_hidden()
            expect(page.locator(f"#block-{block.id}-open")).to_be_focused()
            continue
        # Focus moved into the modal.
        assert page.evaluate("document.getElementById('modal').contains(document.activeElement)")
        if block.kind == "recruit":
            end = (today + timedelta(days=30)).isoformat()
            dialog.get_by_label("End date").fill(end)
            expected = {"start_date": today.isoformat(), "end_date": end}
            summary = f"to {end}"
        elif block.kind == "wait":
            dialog.get_by_label("Days, domestic orders").fill("9")
            dialog.get_by_label("Days, international orders").fill("16")
            expected = {"domestic_days": 9, "international_days": 16}
            summary = "Wait 9 days (16 international)"
        else:
            select_box = dialog.get_by_label("Email")
            select_box.select_option(label="Photo and video request")
            expected = {"email_template_id": int(select_box.input_value())}
            summary = "Photo and video request"
        dialog.get_by_role("button", name="Save").click()
        expect(dialog).to_be_hidden()
        # Only that block was re-rendered, with its new summary; focus is back on it.
        expect(page.locator(f"#block-{block.id} .block-summary")).to_contain_text(summary)
        expect(page.locator(f"#block-{block.id}-open")).to_be_focused()
        session.expire_all()
        config = session.get(Block, block.id).config
        assert {k: config[k] for k in expected} == expected, block.kind


def test_an_end_date_before_the_start_date_is_refused_and_the_typed_values_stay(page: Page,
                                                                               session):
    sequence_id = create_from_template(page, "Review Request")
    recruit = session.scalar(select(Block).where(Block.sequence_id == sequence_id,
                                                 Block.kind == "recruit"))
    before = dict(recruit.config)
    dialog = open_block(page, recruit.id)
    dialog.get_by_label("Start date").fill("2026-12-10")
    dialog.get_by_label("End date").fill("2026-12-01")
    dialog.get_by_role("button", name="Save").click()
    expect(dialog.locator("#end_date-error")).to_have_text(
        "The end date cannot be before the start date.")
    expect(dialog).to_be_visible()
    expect(dialog.get_by_label("Start date")).to_have_value("2026-12-10")
    expect(dialog.get_by_label("End date")).to_have_value("2026-12-01")
    expect(dialog.get_by_label("End date")).to_have_attribute("aria-invalid", "true")
    expect(dialog.get_by_label("End date")).to_be_focused()  # straight to what needs fixing
    session.expire_all()
    assert session.get(Block, recruit.id).config == before
    # Fixing it saves.
    dialog.get_by_label("End date").fill("2026-12-31")
    dialog.get_by_role("button", name="Save").click()
    expect(dialog).to_be_hidden()
    expect(page.locator(f"#block-{recruit.id} .block-summary")).to_contain_text("2026-12-31")


def start_sequence(page: Page):
    page.get_by_role("link", name="Start", exact=True).click()
    dialog = page.locator("dialog#modal")
    expect(dialog).to_be_visible()
    return dialog


def test_start_a_second_is_refused_with_a_link_to_the_first_then_stop(page: Page, session):
    first_id = create_from_template(page, "Review Request", "Spring requests")
    dialog = start_sequence(page)
    expect(dialog).to_contain_text("recruits each order when it is fully fulfilled")
    dialog.get_by_role("button", name="Start sequence").click()
    expect(dialog).to_be_hidden()
    expect(page.locator("#sequence-header .badge")).to_have_text("Running")
    session.expire_all()
    assert session.get(Sequence, first_id).status == SequenceStatus.RUNNING.value

    second_id = create_from_template(page, "Review Request with Reminder", "Summer requests")
    dialog = start_sequence(page)
    dialog.get_by_role("button", name="Start sequence").click()
    refusal = dialog.locator("#start-refused")
    expect(refusal).to_contain_text("“Spring requests” is running")
    session.expire_all()
    assert session.get(Sequence, second_id).status == SequenceStatus.DRAFT.value
    # The refusal links to the running sequence.
    dialog.get_by_role("link", name="Open “Spring requests”").click()
    page.wait_for_url(re.compile(rf"/sequences/{first_id}$"))

    page.get_by_role("link", name="Stop", exact=True).click()
    dialog = page.locator("dialog#modal")
    expect(dialog).to_contain_text("keep their place")
    dialog.get_by_role("button", name="Stop sequence").click()
    expect(page.locator("#sequence-header .badge")).to_have_text("Stopped")
    session.expire_all()
    assert session.get(Sequence, first_id).status == SequenceStatus.STOPPED.value


def test_a_lookback_says_how_many_orders_and_shows_import_progress(page: Page, session, shop,
                                                                  commit, redis_conn):
    now = datetime.now(UTC)
    for days in (3, 10, 20):
        make_order(session, shop, fulfilled_at=now - timedelta(days=days))
    session.commit()
    sequence_id = create_from_template(page, "Review Request")
    recruit = session.scalar(select(Block).where(Block.sequence_id == sequence_id,
                                                 Block.kind == "recruit"))
    dialog = open_block(page, recruit.id)
    dialog.get_by_label("Start date").fill((shop_today(shop, now) - timedelta(days=30)).isoformat())
    dialog.get_by_role("button", name="Save").click()
    expect(dialog).to_be_hidden()

    dialog = start_sequence(page)
    expect(dialog.locator("#lookback-count")).to_contain_text("3 past orders will be recruited")
    dialog.get_by_role("button", name="Start sequence").click()
    expect(dialog).to_be_hidden()
    bar = page.locator("#lookback-progress [role=progressbar]")
    expect(bar).to_be_visible()

    # The import (a worker) reports progress on the sequence; the bar follows by polling.
    def progress(done, total, state="running"):
        def write(s):
            seq = s.get(Sequence, sequence_id)
            seq.lookback_done, seq.lookback_total, seq.lookback_state = done, total, state
        commit(write)

    progress(2, 4)
    expect(bar).to_have_attribute("aria-valuenow", "50")
    expect(page.locator("#lookback-progress")).to_contain_text("2 of 4 orders")
    progress(4, 4, "done")
    expect(page.locator("#lookback-progress")).to_contain_text("Lookback finished: 4 past orders")
    expect(page.locator("#lookback-progress")).not_to_have_attribute("hx-trigger", re.compile("."))


def test_rename_and_delete(page: Page, session):
    sequence_id = create_from_template(page, "Review Request")
    page.get_by_role("link", name="Rename").click()
    dialog = page.locator("dialog#modal")
    dialog.get_by_label("Name").fill("   ")
    dialog.get_by_role("button", name="Save").click()
    expect(dialog.locator("#name-error")).to_have_text("Enter a name.")
    dialog.get_by_label("Name").fill("Winter requests")
    dialog.get_by_role("button", name="Save").click()
    expect(dialog).to_be_hidden()
    expect(page.get_by_role("heading", level=1)).to_have_text("Winter requests")

    page.get_by_role("link", name="Delete").click()
    dialog.get_by_role("button", name="Delete sequence").click()
    page.wait_for_url(re.compile(r"/sequences$"))
    session.expire_all()
    assert session.get(Sequence, sequence_id) is None


def test_running_sequence_cannot_be_deleted(page: Page, session):
    sequence_id = create_from_template(page, "Review Request")
    start_sequence(page).get_by_role("button", name="Start sequence").click()
    expect(page.locator("#sequence-header .badge")).to_have_text("Running")
    page.get_by_role("link", name="Delete").click()
    dialog = page.locator("dialog#modal")
    expect(dialog).to_contain_text("A running sequence can't be deleted")
    expect(dialog.get_by_role("button", name="Delete sequence")).to_have_count(0)
    assert session.get(Sequence, sequence_id) is not None


def test_keyboard_only_and_375px(browser, app, live_server, shop):
    page = open_page(browser, app, live_server, shop, width=375, height=740)
    try:
        page.goto("/sequences")
        # No sideways scrolling on a phone.
        assert page.evaluate("document.documentElement.scrollWidth") <= 375
        new = page.get_by_role("link", name="+ New Sequence").first
        new.focus()
        page.keyboard.press("Enter")
        dialog = page.locator("dialog#modal")
        expect(dialog).to_be_visible()
        assert page.evaluate("document.getElementById('modal').contains(document.activeElement)")
        page.keyboard.press("Escape")
        expect(dialog).to_be_hidden()
        expect(new).to_be_focused()
        # Create one by keyboard and check the flow fits the screen.
        new.focus()
        page.keyboard.press("Enter")
        dialog.get_by_role("radio", name="Review Request with Photo Reminder", exact=True).focus()
        page.keyboard.press("Space")
        dialog.get_by_role("button", name="Create Sequence").focus()
        page.keyboard.press("Enter")
        page.wait_for_url(re.compile(r"/sequences/\d+$"))
        expect(page.locator("#flow .block")).to_have_count(7)
        assert page.evaluate("document.documentElement.scrollWidth") <= 375
        assert page.js_errors == []
    finally:
        page.context.close()


def test_block_counts_refresh_in_place(page: Page, session, commit):
    sequence_id = create_from_template(page, "Review Request")
    blocks = {b.kind: b.id for b in session.scalars(
        select(Block).where(Block.sequence_id == sequence_id))}
    send_counts = page.locator(f"#block-{blocks['send']}-counts dd")
    expect(send_counts.first).to_have_text("0")
    opener = page.locator(f"#block-{blocks['wait']}-open")
    opener.focus()
    commit(lambda s: bump(s, {(sequence_id, blocks["recruit"], "recruited"): 17,
                              (sequence_id, blocks["wait"], "waiting"): 5,
                              (sequence_id, blocks["send"], "sent"): 12,
                              (sequence_id, blocks["send"], "opened"): 4}))
    # The poller runs every 15 s; the same request can be asked for at once.
    page.evaluate("document.body.dispatchEvent(new Event('counts:refresh'))")
    expect(send_counts.nth(0)).to_have_text("12")
    expect(send_counts.nth(1)).to_have_text("4")
    expect(page.locator(f"#block-{blocks['wait']}-counts dd")).to_have_text("5")
    expect(page.locator(f"#block-{blocks['recruit']}-counts dd")).to_have_text("17")
    expect(page.locator("#sequence-figures .figure").nth(2)).to_contain_text("12")
    expect(opener).to_be_focused()  # counts change around the merchant, not under them


def test_a_failed_request_says_so(page: Page, session, commit):
    sequence_id = create_from_template(page, "Review Request")
    recruit = session.scalar(select(Block.id).where(Block.sequence_id == sequence_id,
                                                    Block.kind == "recruit"))
    # Gone meanwhile (deleted in another tab); the database cascades to its blocks.
    commit(lambda s: s.execute(delete(Sequence).where(Sequence.id == sequence_id)))
    page.locator(f"#block-{recruit}-open").click()
    expect(page.locator("#toast")).to_have_text("That item no longer exists. Reload the page.")
    expect(page.locator("dialog#modal")).to_be_hidden()
