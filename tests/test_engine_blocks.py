"""Templates, the drawn flow, block validation and start/stop/rename/delete."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from okapp.models import Block, BlockKind, EmailKind, EmailTemplate, Sequence, SequenceStatus
from okapp.sequences.blocks import BlockValidationError, anchor_choices, flow, update_block
from okapp.sequences.lifecycle import (
    DeleteRefused,
    StartRefused,
    delete_sequence,
    rename_sequence,
    start_sequence,
    stop_sequence,
)
from okapp.sequences.templates import TEMPLATES, create_sequence, ensure_default_emails
from tests.engine_support import NOW, blocks_of
from tests.factories import make_shop


def shape(sequence):
    """The flow as (depth, branch label, kind or END) rows."""
    return [(i.depth, i.branch, i.block.kind if i.block else "END") for i in flow(sequence)]


def test_the_four_templates_in_order_with_their_trees(session, shop):
    assert list(TEMPLATES) == ["review_request", "review_request_reminder",
                               "review_request_two_reminders", "review_request_photo_reminder"]
    made = {key: create_sequence(session, shop, key, NOW) for key in TEMPLATES}
    assert shape(made["review_request"]) == [(0, "", "recruit"), (0, "", "wait"), (0, "", "send")]
    assert shape(made["review_request_reminder"])[3:] == [
        (0, "", "wait"), (0, "", "split"), (1, "no", "send"), (1, "yes", "END")]
    assert shape(made["review_request_two_reminders"])[5:] == [
        (1, "no", "send"), (1, "no", "wait"), (1, "no", "split"), (2, "no", "send"),
        (2, "yes", "END"), (1, "yes", "END")]
    assert shape(made["review_request_photo_reminder"])[5:] == [
        (1, "no_review", "send"), (1, "high_rating_no_media", "send"), (1, "other", "END")]
    for key, sequence in made.items():
        assert sequence.status == SequenceStatus.DRAFT.value
        assert sequence.name == TEMPLATES[key].name
        assert sequence.blocks[0].config["start_date"] == "2026-11-02"  # today, shop time
        wait = blocks_of(sequence, BlockKind.WAIT)[0]
        assert wait.config == {"anchor": "fulfillment", "domestic_days": 7,
                               "international_days": 14}
    emails = {e.kind: e.id for e in session.scalars(select(EmailTemplate))}
    assert len(emails) == 4  # the shop's four default emails, made once
    sends = blocks_of(made["review_request_photo_reminder"], BlockKind.SEND)
    assert [s.config["email_template_id"] for s in sends] == [
        emails["request"], emails["reminder"], emails["media_request"]]
    two = blocks_of(made["review_request_two_reminders"], BlockKind.SEND)
    assert two[2].config["email_template_id"] == emails["second_reminder"]
    labels = [i.branch_label for i in flow(made["review_request_photo_reminder"]) if i.branch_label]
    assert labels == ["No review", "4–5 stars, no photo or video", "Anything else"]
    assert flow(made["review_request"])[2].summary == "Send “Review request”"


def test_merchant_name_and_unknown_template(session, shop):
    assert create_sequence(session, shop, "review_request", NOW, name="  Spring  ").name == "Spring"
    with pytest.raises(ValueError, match="unknown template"):
        create_sequence(session, shop, "nope", NOW)


def test_default_emails_are_created_once_with_built_in_copy(session, shop):
    first = ensure_default_emails(session, shop)
    again = ensure_default_emails(session, shop)
    assert {k: e.id for k, e in first.items()} == {k: e.id for k, e in again.items()}
    assert set(first) == set(EmailKind) and all(e.fields == {} for e in first.values())


@pytest.mark.parametrize("data, errors", [
    ({"start_date": ""}, {"start_date": "Enter a start date."}),
    ({"start_date": "2026-13-01"}, {"start_date": "Enter a date as YYYY-MM-DD."}),
    ({"start_date": "2026-11-10", "end_date": "2026-11-01"},
     {"end_date": "The end date cannot be before the start date."}),
])
def test_recruit_validation(session, shop, data, errors):
    sequence = create_sequence(session, shop, "review_request", NOW)
    recruit = sequence.blocks[0]
    before = dict(recruit.config)
    with pytest.raises(BlockValidationError) as exc:
        update_block(session, recruit, data, NOW)
    assert exc.value.errors == errors
    assert recruit.config == before  # nothing kept


def test_recruit_end_date_optional(session, shop):
    recruit = create_sequence(session, shop, "review_request", NOW).blocks[0]
    update_block(session, recruit, {"start_date": "2026-10-01", "end_date": ""}, NOW)
    assert recruit.config == {"start_date": "2026-10-01", "end_date": ""}


def test_wait_validation(session, shop):
    sequence = create_sequence(session, shop, "review_request_reminder", NOW)
    first, follow_up = blocks_of(sequence, BlockKind.WAIT)
    with pytest.raises(BlockValidationError) as exc:
        update_block(session, first, {"anchor": "previous_email", "domestic_days": "366",
                                      "international_days": "2.5"}, NOW)
    assert set(exc.value.errors) == {"anchor", "domestic_days", "international_days"}
    assert "0 to 365" in exc.value.errors["domestic_days"]
    assert [k for k, _ in anchor_choices(first)] == ["fulfillment", "delivery"]
    assert [k for k, _ in anchor_choices(follow_up)] == ["fulfillment", "delivery",
                                                          "previous_email"]
    update_block(session, first, {"anchor": "delivery", "domestic_days": "0",
                                  "international_days": "365"}, NOW)
    assert first.config == {"anchor": "delivery", "domestic_days": 0, "international_days": 365}


def test_send_must_name_an_email_of_this_shop_and_split_is_fixed(session, shop):
    sequence = create_sequence(session, shop, "review_request_reminder", NOW)
    send = blocks_of(sequence, BlockKind.SEND)[0]
    other_shop = make_shop(session)
    foreign = ensure_default_emails(session, other_shop)[EmailKind.REMINDER]
    for bad in ("", "abc", str(foreign.id), "999999"):
        with pytest.raises(BlockValidationError) as exc:
            update_block(session, send, {"email_template_id": bad}, NOW)
        assert "email_template_id" in exc.value.errors
    mine = ensure_default_emails(session, shop)[EmailKind.REMINDER]
    update_block(session, send, {"email_template_id": str(mine.id)}, NOW)
    assert send.config == {"email_template_id": mine.id}
    split = blocks_of(sequence, BlockKind.SPLIT)[0]
    with pytest.raises(BlockValidationError, match="cannot be edited"):
        update_block(session, split, {"condition": "x"}, NOW)


def test_one_running_sequence_per_shop_and_the_refusal_names_it(session, shop):
    a = create_sequence(session, shop, "review_request", NOW, name="Alpha")
    b = create_sequence(session, shop, "review_request", NOW, name="Beta")
    result = start_sequence(session, a, NOW)
    assert result.lookback is False and a.status == "running"
    with pytest.raises(StartRefused, match="“Alpha” is running") as exc:
        start_sequence(session, b, NOW)
    assert exc.value.running.id == a.id and b.status == "draft"
    # The database says no too, whatever the code does.
    session.commit()
    b.status = "running"
    with pytest.raises(Exception, match="(?i)unique"):
        session.commit()
    session.rollback()
    stop_sequence(session, a, NOW)
    assert start_sequence(session, b, NOW + timedelta(minutes=1)).sequence.status == "running"


def test_start_with_a_past_start_date_is_a_lookback(session, shop):
    sequence = create_sequence(session, shop, "review_request", NOW)
    sequence.blocks[0].config = {"start_date": "2026-09-01", "end_date": ""}
    result = start_sequence(session, sequence, NOW)
    assert result.lookback and sequence.lookback_state == "running"


def test_rename_delete_and_running_refusals(session, shop):
    sequence = create_sequence(session, shop, "review_request", NOW)
    with pytest.raises(BlockValidationError):
        rename_sequence(session, sequence, "   ")
    rename_sequence(session, sequence, "Autumn")
    assert sequence.name == "Autumn"
    start_sequence(session, sequence, NOW)
    with pytest.raises(DeleteRefused, match="Stop it before deleting"):
        delete_sequence(session, sequence)
    with pytest.raises(BlockValidationError, match="Stop the sequence"):
        update_block(session, sequence.blocks[0], {"start_date": "2026-01-01"}, NOW)
    stop_sequence(session, sequence, NOW)
    sequence_id = sequence.id
    delete_sequence(session, sequence)
    session.commit()
    assert session.get(Sequence, sequence_id) is None
    assert session.scalar(select(Block.id).where(Block.sequence_id == sequence_id)) is None
