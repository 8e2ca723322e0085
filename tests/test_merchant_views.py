"""The merchant pages over HTTP: page or fragment, shop scoping, refusals and polling."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from okapp.models import Block, Sequence, SequenceStatus
from okapp.sequences import stats
from okapp.sequences.journal import bump
from okapp.sequences.lifecycle import start_sequence
from okapp.sequences.templates import TEMPLATES, create_sequence
from okapp.views.flow_drawing import CHIP_H, CHIP_W, mini_flow
from tests.browser.test_sequences_ui import count_blocks
from tests.factories import make_order, make_shop

HX = {"HX-Request": "true"}


def new_sequence(session, shop, template="review_request_reminder", name=None) -> Sequence:
    sequence = create_sequence(session, shop, template, datetime.now(UTC), name=name)
    session.commit()
    return sequence


def test_sequences_page_lists_status_and_counts(merchant, session, shop):
    new_sequence(session, shop, name="Fall <b>requests</b>")
    html = merchant.get("/sequences").get_data(as_text=True)
    assert "Fall &lt;b&gt;requests&lt;/b&gt;" in html  # merchant text is escaped
    assert "badge-draft" in html and "Recruited" in html and "Reviews" in html
    assert '<ui-nav-menu>' in html and 'href="/orders"' in html


def test_the_picker_is_a_fragment_for_htmx_and_a_page_otherwise(merchant):
    fragment = merchant.get("/sequences/new", headers=HX)
    assert "HX-Request" in fragment.headers["Vary"]
    body = fragment.get_data(as_text=True)
    assert "<html" not in body and "Create Sequence" in body
    for template in TEMPLATES.values():
        assert template.name in body and template.description in body
    assert body.count('<svg class="mini-flow"') == len(TEMPLATES)
    page = merchant.get("/sequences/new").get_data(as_text=True)
    assert page.startswith("<!doctype html>") and "Create Sequence" in page


def test_create_redirects_htmx_to_the_new_sequence(merchant, session, shop):
    response = merchant.post("/sequences", data={"template": "review_request", "name": ""},
                             headers=HX)
    sequence = session.scalar(select(Sequence).where(Sequence.shop_id == shop.id))
    assert response.headers["HX-Trigger"] == f'{{"navigate": "/sequences/{sequence.id}"}}'
    assert sequence.name == "Review Request"  # the template's name when left empty


def test_create_with_an_unknown_template_says_what_to_fix(merchant, session, shop):
    response = merchant.post("/sequences", data={"template": "nope", "name": "Mine"}, headers=HX)
    assert response.status_code == 422
    assert response.headers["HX-Retarget"] == "#modal-content"
    body = response.get_data(as_text=True)
    assert "Choose one of the four templates." in body and 'value="Mine"' in body
    assert session.scalar(select(Sequence)) is None


def test_another_shops_sequence_is_not_found(merchant, session):
    other = make_shop(session)
    sequence = new_sequence(session, other)
    block = sequence.blocks[0]
    assert merchant.get(f"/sequences/{sequence.id}").status_code == 404
    assert merchant.get(f"/sequences/{sequence.id}/blocks/{block.id}", headers=HX).status_code == 404
    response = merchant.post(f"/sequences/{sequence.id}/blocks/{block.id}",
                             data={"start_date": "2020-01-01"}, headers=HX)
    assert response.status_code == 404
    assert merchant.post(f"/sequences/{sequence.id}/start", headers=HX).status_code == 404
    assert merchant.post(f"/sequences/{sequence.id}/delete", headers=HX).status_code == 404
    session.expire_all()
    assert session.get(Block, block.id).config["start_date"] != "2020-01-01"
    assert session.get(Sequence, sequence.id).status == SequenceStatus.DRAFT.value


def test_saving_a_block_returns_only_that_block_and_closes_the_modal(merchant, session, shop):
    sequence = new_sequence(session, shop)
    wait = next(b for b in sequence.blocks if b.kind == "wait")
    response = merchant.post(f"/sequences/{sequence.id}/blocks/{wait.id}", headers=HX, data={
        "anchor": "delivery", "domestic_days": "3", "international_days": "10"})
    assert response.status_code == 200
    body = response.get_data(as_text=True)
    assert body.strip().startswith(f'<div class="block block-wait" id="block-{wait.id}"')
    assert "Wait 3 days (10 international) after delivery" in body
    assert '"modal:close": true' in response.headers["HX-Trigger-After-Settle"]


def test_an_invalid_block_keeps_the_input_and_changes_nothing(merchant, session, shop):
    sequence = new_sequence(session, shop)
    wait = next(b for b in sequence.blocks if b.kind == "wait")
    before = dict(wait.config)
    response = merchant.post(f"/sequences/{sequence.id}/blocks/{wait.id}", headers=HX, data={
        "anchor": "delivery", "domestic_days": "seven", "international_days": "400"})
    assert response.status_code == 422
    assert response.headers["HX-Retarget"] == "#modal-content"
    body = response.get_data(as_text=True)
    assert 'value="seven"' in body and 'value="400"' in body
    assert "Enter whole days (0 to 365)." in body and 'aria-invalid="true"' in body
    session.expire_all()
    assert session.get(Block, wait.id).config == before


def test_a_split_cannot_be_edited(merchant, session, shop):
    sequence = new_sequence(session, shop)
    split = next(b for b in sequence.blocks if b.kind == "split")
    form = merchant.get(f"/sequences/{sequence.id}/blocks/{split.id}", headers=HX)
    assert "Has the customer reviewed?" in form.get_data(as_text=True)
    assert "<form" not in form.get_data(as_text=True)
    response = merchant.post(f"/sequences/{sequence.id}/blocks/{split.id}", headers=HX,
                             data={"condition": "always"})
    assert response.status_code == 422
    session.expire_all()
    assert session.get(Block, split.id).config == {"condition": "reviewed"}


def test_start_refused_names_the_running_sequence(merchant, session, shop):
    running = new_sequence(session, shop, name="Running one")
    start_sequence(session, running, datetime.now(UTC))
    session.commit()
    other = new_sequence(session, shop, name="Second")
    response = merchant.post(f"/sequences/{other.id}/start", headers=HX)
    assert response.status_code == 422
    body = response.get_data(as_text=True)
    assert "“Running one” is running" in body
    assert f'href="/sequences/{running.id}"' in body
    session.expire_all()
    assert session.get(Sequence, other.id).status == SequenceStatus.DRAFT.value


def test_a_lookback_start_enqueues_the_import_and_polls_its_progress(merchant, session, shop,
                                                                     redis_conn, runtime):
    now = datetime.now(UTC)
    make_order(session, shop, fulfilled_at=now - timedelta(days=5))
    sequence = new_sequence(session, shop, "review_request")
    recruit = sequence.blocks[0]
    recruit.config = {"start_date": (now - timedelta(days=20)).date().isoformat(), "end_date": ""}
    session.commit()
    confirm = merchant.get(f"/sequences/{sequence.id}/start", headers=HX).get_data(as_text=True)
    assert "1 past order</strong> will be recruited" in confirm
    response = merchant.post(f"/sequences/{sequence.id}/start", headers=HX)
    assert response.status_code == 200
    assert 'hx-trigger="every 1s"' in response.get_data(as_text=True)
    jobs = runtime.queue("default").get_job_ids()
    assert f"lookback-import-{sequence.id}" in jobs
    poll = merchant.get(f"/sequences/{sequence.id}/lookback", headers=HX).get_data(as_text=True)
    assert poll.strip().startswith('<div id="lookback-progress"') and "every 1s" in poll
    sequence = session.get(Sequence, sequence.id)
    session.refresh(sequence)
    sequence.lookback_state, sequence.lookback_done = "done", 1
    session.commit()
    poll = merchant.get(f"/sequences/{sequence.id}/lookback", headers=HX).get_data(as_text=True)
    assert "hx-trigger" not in poll and "Lookback finished" in poll


def test_a_running_sequence_cannot_be_deleted(merchant, session, shop):
    sequence = new_sequence(session, shop)
    start_sequence(session, sequence, datetime.now(UTC))
    session.commit()
    response = merchant.post(f"/sequences/{sequence.id}/delete", headers=HX)
    assert response.status_code == 422
    assert "Stop it before deleting it" in response.get_data(as_text=True)
    assert session.get(Sequence, sequence.id) is not None


def test_counts_come_back_out_of_band(merchant, session, shop):
    sequence = new_sequence(session, shop)
    body = merchant.get(f"/sequences/{sequence.id}/counts", headers=HX).get_data(as_text=True)
    assert 'id="sequence-figures" hx-swap-oob="true"' in body
    for block in sequence.blocks:
        assert f'id="block-{block.id}-counts" hx-swap-oob="true"' in body


def test_figures_are_the_sum_of_the_block_counters(merchant, session, shop):
    sequence = new_sequence(session, shop)
    recruit, wait, send = (next(b for b in sequence.blocks if b.kind == k)
                           for k in ("recruit", "wait", "send"))
    bump(session, {(sequence.id, recruit.id, "recruited"): 1234,
                   (sequence.id, wait.id, "waiting"): 7, (sequence.id, send.id, "sent"): 1000,
                   (sequence.id, send.id, "opened"): 400, (sequence.id, send.id, "reviewed"): 100,
                   (sequence.id, send.id, "skipped:suppressed"): 3})
    session.commit()
    assert stats.combined(stats.block_counts(session, sequence).values()) == stats.totals(
        session, sequence)
    page = merchant.get(f"/sequences/{sequence.id}").get_data(as_text=True)
    figures = page[page.index('id="sequence-figures"'):page.index('id="flow"')]
    for figure in ("1,234", "1,000", "400", "100", "10%"):
        assert f'<div class="value">{figure}</div>' in figures
    block = page[page.index(f'id="block-{send.id}-counts"'):]
    assert "<dd>1,000</dd><dt>sent</dt>" in block and "<dd>3</dd><dt>skipped</dt>" in block
    listing = merchant.get("/sequences").get_data(as_text=True)
    assert all(f">{n}</td>" in listing for n in ("1,234", "1,000", "100"))


def test_order_lookup_is_scoped_to_the_shop(merchant, session, shop):
    other = make_shop(session)
    theirs = make_order(session, other, email="same@example.com")
    mine = make_order(session, shop, email="same@example.com")
    session.commit()
    found = merchant.get("/orders?q=same@example.com", headers=HX).get_data(as_text=True)
    assert mine.name in found and theirs.name not in found
    assert "<html" not in found  # the results fragment only
    assert merchant.get(f"/orders/{theirs.id}").status_code == 404
    assert merchant.get(f"/orders/{mine.id}").status_code == 200


def test_each_template_drawing_has_one_chip_per_block_inside_its_box():
    for template in TEMPLATES.values():
        drawing = mini_flow(template.build())
        assert len(drawing.chips) == count_blocks(template.build()), template.key
        for chip in drawing.chips:
            assert chip["x"] + CHIP_W <= drawing.width and chip["y"] + CHIP_H <= drawing.height
    # A split fans out: the photo template has two branches with an email and one that ends.
    photo = mini_flow(TEMPLATES["review_request_photo_reminder"].build())
    assert len({chip["y"] for chip in photo.chips}) == 2 and len(photo.ends) == 1
