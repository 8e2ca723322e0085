"""Settings: how the shop's emails are sent (sender, reply-to, window, address, limits) and the
blocklist of addresses and domains, with CSV import and export."""

from __future__ import annotations

from flask import Blueprint, Response, g, redirect, request, url_for

from okapp.db import utcnow
from okapp.emails import settings
from okapp.views import db, is_htmx, render, with_toast
from okapp.views.auth import merchant_required

bp = Blueprint("settings", __name__, url_prefix="/settings")

MAX_CSV_BYTES = 5 * 1024 * 1024


def _blocklist_context(query: str = "", error: str = "", entry: str = "", report=None) -> dict:
    rows, total = settings.search(db(), g.shop, query)
    return {"suppressions": rows, "total": total, "query": query, "block_error": error,
            "entry": entry, "report": report}


def _page(form: dict, errors: dict | None = None, **blocklist):
    return render("settings/index.html", "settings/_form.html", form=form, errors=errors or {},
                  **_blocklist_context(**blocklist))


@bp.get("")
@merchant_required
def index():
    if is_htmx() and "q" in request.args:
        return render("settings/index.html", "settings/_blocklist.html",
                      **_blocklist_context(request.args.get("q", "")))
    return _page(settings.current(g.shop))


@bp.post("")
@merchant_required
def save():
    values, errors = settings.validate(request.form)
    if errors:
        # What the merchant typed comes back as typed, with what to fix next to each field.
        form = {k: request.form.get(k, "") for k in settings.EDITABLE}
        return _page(form, errors), 422
    settings.save(g.shop, values)
    db().commit()
    if not is_htmx():
        return redirect(url_for("settings.index"), 303)
    return with_toast(_page(settings.current(g.shop)), "Settings saved")


def _blocklist(status: int = 200, **context):
    body = render("settings/index.html", "settings/_blocklist.html", form=settings.current(g.shop),
                  errors={}, **_blocklist_context(**context))
    return body, status


@bp.post("/blocklist")
@merchant_required
def add_blocked():
    entry = (request.form.get("entry") or "").strip()
    try:
        added = settings.add_to_blocklist(db(), g.shop, entry, utcnow())
    except ValueError as exc:
        db().rollback()
        return _blocklist(422, error=str(exc), entry=entry)
    db().commit()
    if not is_htmx():
        return redirect(url_for("settings.index"), 303)
    body, _ = _blocklist()
    return with_toast(body, f"{entry} blocked" if added else f"{entry} was already blocked")


@bp.post("/blocklist/<int:suppression_id>/delete")
@merchant_required
def remove_blocked(suppression_id: int):
    removed = settings.remove_from_blocklist(db(), g.shop, suppression_id)
    db().commit()
    if not is_htmx():
        return redirect(url_for("settings.index"), 303)
    body, _ = _blocklist()
    return with_toast(body, "Removed from the blocklist" if removed else "Nothing to remove")


@bp.post("/blocklist/import")
@merchant_required
def import_blocklist():
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        return _blocklist(422, error="Choose a CSV file with one email address or *@domain per row.")
    data = upload.stream.read(MAX_CSV_BYTES + 1)
    if len(data) > MAX_CSV_BYTES:
        return _blocklist(422, error="That file is over 5 MB; split it into smaller files.")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return _blocklist(422, error="Save the file as UTF-8 CSV and try again.")
    try:
        result = settings.import_csv(db(), g.shop, text, utcnow())
    except ValueError as exc:
        db().rollback()
        return _blocklist(422, error=str(exc))
    db().commit()
    if not is_htmx():
        return redirect(url_for("settings.index"), 303)
    body, _ = _blocklist(report=result)
    return with_toast(body, f"{result.added} added to the blocklist")


@bp.get("/blocklist.csv")
@merchant_required
def export_blocklist():
    filename = f"blocklist-{g.shop.domain.split('.')[0]}.csv"
    return Response(settings.export_csv(db(), g.shop), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})
