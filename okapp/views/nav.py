"""The app's navigation: one list for App Bridge's admin sidebar and for the in-page bar."""

from __future__ import annotations

from flask import current_app, request, url_for

# (label, endpoint). A page shows up once its blueprint is registered, so an area that is not built
# yet never becomes a dead link.
PAGES = (
    ("Sequences", "sequences.index"),
    ("Emails", "emails.index"),
    ("Reviews", "reviews.index"),
    ("Orders", "orders.index"),
    ("Settings", "settings.index"),
)


def nav_items() -> list[dict]:
    items = []
    current_area = (request.endpoint or "").split(".")[0]
    for label, endpoint in PAGES:
        if endpoint in current_app.view_functions:
            items.append({
                "label": label,
                "url": url_for(endpoint),
                "active": endpoint.split(".")[0] == current_area,
            })
    return items


def inject_nav() -> dict:
    return {"nav_items": nav_items()}
