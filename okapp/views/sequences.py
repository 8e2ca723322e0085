"""The Sequences page and the pages of one sequence: the flow, block modals, start/stop, rename,
delete and the lookback progress bar. Thin: every decision is the engine's (okapp.sequences)."""

from __future__ import annotations

import json

from flask import Blueprint, Response, abort, g, redirect, request, url_for
from sqlalchemy import select

from okapp.db import utcnow
from okapp.jobs.sync import lookback_import
from okapp.models import Block, BlockKind, EmailTemplate, Sequence
from okapp.sequences import lifecycle, stats
from okapp.sequences.blocks import (
    SPLIT_CONDITIONS,
    BlockValidationError,
    anchor_choices,
    flow,
    update_block,
)
from okapp.sequences.recruit import SKIP_REASONS, date_range, lookback_preview
from okapp.sequences.templates import TEMPLATES, create_sequence
from okapp.views import db, is_htmx, render, runtime
from okapp.views.auth import merchant_required
from okapp.views.flow_drawing import mini_flow

bp = Blueprint("sequences", __name__, url_prefix="/sequences")

COUNTS_POLL_SECONDS = 15


# -- helpers -------------------------------------------------------------------------------------

def _sequence_or_404(sequence_id: int) -> Sequence:
    sequence = lifecycle.get_sequence(db(), g.shop.id, sequence_id)  # another shop's: None
    if sequence is None:
        abort(404)
    return sequence


def _block_or_404(sequence: Sequence, block_id: int) -> Block:
    block = next((b for b in sequence.blocks if b.id == block_id), None)
    if block is None:
        abort(404)
    return block


def _go_to(url: str):
    """Load another page. For htmx, ui.js calls `open(url, "_self")`: inside the admin App Bridge
    turns that into an in-app navigation with a fresh ID token (a bare location change would not
    carry one); in the demo it is a plain navigation. Without htmx, a 303."""
    if is_htmx():
        return Response(status=204, headers={"HX-Trigger": json.dumps({"navigate": url})})
    return redirect(url, 303)


def _done(response, toast: str):
    """A successful modal action: swap the response in, then close the modal and say so."""
    if not isinstance(response, Response):
        response = Response(response)
    response.headers["HX-Trigger-After-Settle"] = json.dumps({"modal:close": True, "toast": toast})
    return response


def _refused(body: str):
    """A form answer with something to fix: it replaces the modal's content, keeping the modal."""
    return Response(body, status=422, headers={"HX-Retarget": "#modal-content",
                                               "HX-Reswap": "innerHTML"})


def nest(items) -> list[dict]:
    """The engine's flat, depth-first flow as a tree for drawing: each node is
    {"item", "branches": [{"key", "label", "chain"}]}; a SPLIT ends its chain."""
    pos = 0

    def chain(depth: int) -> list[dict]:
        nonlocal pos
        out: list[dict] = []
        while pos < len(items) and items[pos].depth == depth:
            item = items[pos]
            if out and item.branch_label:  # the first row of the next sibling branch
                break
            pos += 1
            node = {"item": item, "branches": []}
            out.append(node)
            if item.block is not None and item.block.kind == BlockKind.SPLIT.value:
                while pos < len(items) and items[pos].depth == depth + 1 and items[pos].branch_label:
                    first = items[pos]
                    node["branches"].append({"key": first.branch, "label": first.branch_label,
                                             "chain": chain(depth + 1)})
                break
        return out

    return chain(0)


def _flow_item(sequence: Sequence, block: Block):
    return next(item for item in flow(sequence) if item.block is not None and item.block.id == block.id)


def _page_context(sequence: Sequence) -> dict:
    items = flow(sequence)
    counts = stats.block_counts(db(), sequence)
    return {
        "sequence": sequence,
        "flow_items": items,
        "tree": nest(items),
        "counts": counts,
        "totals": stats.combined(counts.values()),
        "poll_seconds": COUNTS_POLL_SECONDS,
    }


# -- the Sequences page and creating a sequence -------------------------------------------------

@bp.get("")
@merchant_required
def index():
    sequences = db().scalars(
        select(Sequence).where(Sequence.shop_id == g.shop.id).order_by(Sequence.created_at.desc())
    ).all()
    counts = stats.sequence_counts(db(), g.shop.id)
    return render("sequences/index.html", sequences=sequences, counts=counts,
                  no_counts=stats.Counts())


def _picker(form: dict, errors: dict | None = None, status: int = 200):
    body = render("sequences/new.html", "sequences/_new.html", templates=list(TEMPLATES.values()),
                  drawings={key: mini_flow(t.build()) for key, t in TEMPLATES.items()},
                  form=form, errors=errors or {})
    return _refused(body) if status == 422 else body


@bp.get("/new")
@merchant_required
def new():
    first = next(iter(TEMPLATES.values()))
    key = request.args.get("template", first.key)
    template = TEMPLATES.get(key, first)
    return _picker({"template": template.key, "name": template.name})


@bp.post("")
@merchant_required
def create():
    form = {"template": request.form.get("template", ""), "name": request.form.get("name", "")}
    if form["template"] not in TEMPLATES:
        return _picker(form, {"template": "Choose one of the four templates."}, 422)
    try:
        sequence = create_sequence(db(), g.shop, form["template"], utcnow(), name=form["name"])
    except ValueError as exc:  # the name is too long
        db().rollback()
        return _picker(form, {"name": str(exc).capitalize() + "."}, 422)
    db().commit()
    return _go_to(url_for("sequences.show", sequence_id=sequence.id))


# -- one sequence --------------------------------------------------------------------------------

@bp.get("/<int:sequence_id>")
@merchant_required
def show(sequence_id: int):
    sequence = _sequence_or_404(sequence_id)
    return render("sequences/show.html", **_page_context(sequence))


@bp.get("/<int:sequence_id>/counts")
@merchant_required
def counts(sequence_id: int):
    """The live figures: the headline numbers and every block's counts, swapped out of band."""
    sequence = _sequence_or_404(sequence_id)
    return render("sequences/_counts.html", "sequences/_counts.html", **_page_context(sequence))


@bp.get("/<int:sequence_id>/lookback")
@merchant_required
def lookback(sequence_id: int):
    """The lookback progress bar, which polls itself here (every second) until the import ends:
    it reads only the sequence row."""
    sequence = _sequence_or_404(sequence_id)
    if not is_htmx():
        return redirect(url_for("sequences.show", sequence_id=sequence.id), 303)
    return render("sequences/_lookback.html", "sequences/_lookback.html", sequence=sequence)


# -- blocks --------------------------------------------------------------------------------------

def _block_form(sequence: Sequence, block: Block, form: dict, errors: dict | None = None):
    emails = db().scalars(
        select(EmailTemplate).where(EmailTemplate.shop_id == g.shop.id).order_by(EmailTemplate.id)
    ).all() if block.kind == BlockKind.SEND.value else []
    condition = SPLIT_CONDITIONS.get((block.config or {}).get("condition", ""))
    return render(
        "sequences/block.html", "sequences/_block_form.html", sequence=sequence, block=block,
        form=form, errors=errors or {}, emails=emails, condition=condition,
        anchors=anchor_choices(block) if block.kind == BlockKind.WAIT.value else [],
    )


@bp.get("/<int:sequence_id>/blocks/<int:block_id>")
@merchant_required
def edit_block(sequence_id: int, block_id: int):
    sequence = _sequence_or_404(sequence_id)
    block = _block_or_404(sequence, block_id)
    form = {k: "" if v is None else str(v) for k, v in (block.config or {}).items()}
    return _block_form(sequence, block, form)


@bp.post("/<int:sequence_id>/blocks/<int:block_id>")
@merchant_required
def save_block(sequence_id: int, block_id: int):
    sequence = _sequence_or_404(sequence_id)
    block = _block_or_404(sequence, block_id)
    try:
        update_block(db(), block, request.form, utcnow())
    except BlockValidationError as exc:
        db().rollback()
        # What the merchant typed comes back as typed, with what to fix next to each field.
        body = _block_form(sequence, block, request.form.to_dict(), exc.errors)
        return _refused(body) if is_htmx() else (body, 422)
    db().commit()
    if not is_htmx():
        return redirect(url_for("sequences.show", sequence_id=sequence.id), 303)
    body = render("sequences/_block.html", "sequences/_block.html", sequence=sequence,
                  item=_flow_item(sequence, block), counts=stats.block_counts(db(), sequence))
    return _done(body, "Saved")


# -- start, stop, rename, delete ---------------------------------------------------------------

def _header_changed(sequence: Sequence, toast: str):
    """After start, stop or rename: the new header (name, status, buttons, lookback progress)."""
    if not is_htmx():
        return redirect(url_for("sequences.show", sequence_id=sequence.id), 303)
    return _done(render("sequences/_header.html", "sequences/_header.html", sequence=sequence),
                 toast)


def _modal(page_title: str, fragment: str, sequence: Sequence, status: int = 200, **context):
    body = render("sequences/action.html", fragment, sequence=sequence, page_title=page_title,
                  action_fragment=fragment, **context)
    return _refused(body) if status == 422 and is_htmx() else (body, status)


def _start_context(sequence: Sequence, refusal: str = "", running: Sequence | None = None):
    """What starting will do: a lookback shows how many past orders it will recruit."""
    now = utcnow()
    start_date, end_date = date_range(sequence)
    preview = None
    if not refusal and lifecycle.starts_with_lookback(sequence, now):
        preview = lookback_preview(db(), sequence, now)
    return {"refusal": refusal, "running": running, "preview": preview,
            "start_date": start_date, "end_date": end_date, "skip_reasons": SKIP_REASONS,
            "hourly_rate": g.shop.setting("lookback_hourly_rate"),
            "age_cap": g.shop.setting("lookback_age_cap_days")}


@bp.get("/<int:sequence_id>/start")
@merchant_required
def confirm_start(sequence_id: int):
    sequence = _sequence_or_404(sequence_id)
    return _modal("Start sequence", "sequences/_start.html", sequence, **_start_context(sequence))


@bp.post("/<int:sequence_id>/start")
@merchant_required
def start(sequence_id: int):
    sequence = _sequence_or_404(sequence_id)
    try:
        result = lifecycle.start_sequence(db(), sequence, utcnow())
    except lifecycle.StartRefused as refusal:
        db().rollback()
        return _modal("Start sequence", "sequences/_start.html", sequence, 422,
                      **_start_context(sequence, str(refusal), refusal.running))
    db().commit()
    if result.lookback:
        _enqueue_lookback_import(sequence)
    return _header_changed(sequence, "Sequence started")


def _enqueue_lookback_import(sequence: Sequence) -> None:
    """Past orders come from Shopify first (okapp.jobs.sync), then the job recruits them; the
    progress bar reads what it writes on the sequence."""
    runtime().queue("default").enqueue(lookback_import, sequence.id,
                                       job_id=f"lookback-import-{sequence.id}",
                                       job_timeout=3600, result_ttl=600)


@bp.get("/<int:sequence_id>/stop")
@merchant_required
def confirm_stop(sequence_id: int):
    sequence = _sequence_or_404(sequence_id)
    return _modal("Stop sequence", "sequences/_stop.html", sequence,
                  waiting=stats.totals(db(), sequence).waiting)


@bp.post("/<int:sequence_id>/stop")
@merchant_required
def stop(sequence_id: int):
    sequence = _sequence_or_404(sequence_id)
    lifecycle.stop_sequence(db(), sequence, utcnow())  # stopping a stopped one changes nothing
    db().commit()
    return _header_changed(sequence, "Sequence stopped")


@bp.get("/<int:sequence_id>/rename")
@merchant_required
def confirm_rename(sequence_id: int):
    sequence = _sequence_or_404(sequence_id)
    return _modal("Rename sequence", "sequences/_rename.html", sequence,
                  form={"name": sequence.name}, errors={})


@bp.post("/<int:sequence_id>/rename")
@merchant_required
def rename(sequence_id: int):
    sequence = _sequence_or_404(sequence_id)
    name = request.form.get("name", "")
    try:
        lifecycle.rename_sequence(db(), sequence, name)
    except BlockValidationError as exc:
        db().rollback()
        return _modal("Rename sequence", "sequences/_rename.html", sequence, 422,
                      form={"name": name}, errors=exc.errors)
    db().commit()
    return _header_changed(sequence, "Renamed")


@bp.get("/<int:sequence_id>/delete")
@merchant_required
def confirm_delete(sequence_id: int):
    sequence = _sequence_or_404(sequence_id)
    return _modal("Delete sequence", "sequences/_delete.html", sequence, error="")


@bp.post("/<int:sequence_id>/delete")
@merchant_required
def delete(sequence_id: int):
    sequence = _sequence_or_404(sequence_id)
    try:
        lifecycle.delete_sequence(db(), sequence)
    except lifecycle.DeleteRefused as exc:
        db().rollback()
        return _modal("Delete sequence", "sequences/_delete.html", sequence, 422, error=str(exc))
    db().commit()
    return _go_to(url_for("sequences.index"))
