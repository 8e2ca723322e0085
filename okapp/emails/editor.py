"""What the email editor does, without Flask: the form's values, their validation, saving.

The form shows, per locale, the merchant's text or else the built-in copy; saving stores only what
differs from the built-in copy, so a field the merchant never touched keeps improving with the app.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from okapp.emails import copy, sandbox
from okapp.models import EmailTemplate

MAX_LENGTHS = {"subject": 200, "preheader": 200, "heading": 200, "body": 5000,
               "button_text": 60, "name": 100}
_HEX_COLOR = re.compile(r"^#(?:[0-9a-fA-F]{3}){1,2}$")


def form_values(template: EmailTemplate, locale: str) -> dict[str, str]:
    saved = (template.fields or {}).get(locale) or {}
    values = copy.default_fields(template.kind, locale)
    values.update({k: v for k, v in saved.items() if k in copy.FIELD_NAMES and isinstance(v, str)})
    values.update(name=template.name, brand_color=template.brand_color,
                  logo_url=template.logo_url, locale=locale)
    return values


def read_form(form: Mapping[str, str]) -> dict[str, str]:
    values = {name: (form.get(name) or "").replace("\r\n", "\n") for name in copy.FIELD_NAMES}
    for name in ("name", "brand_color", "logo_url"):
        values[name] = (form.get(name) or "").strip()
    locale = form.get("locale") or "en"
    values["locale"] = locale if locale in copy.SUPPORTED_LOCALES else "en"
    return values


def validate(values: Mapping[str, str], *, for_save: bool = True) -> dict[str, str]:
    """Errors by field, in the merchant's words. Unknown variables and anything that is not plain
    text with the allowed variables is refused here, at save time, not discovered at send time."""
    errors = sandbox.check_fields({name: values.get(name, "") for name in copy.FIELD_NAMES})
    for name, limit in MAX_LENGTHS.items():
        if len(values.get(name, "")) > limit and name not in errors:
            errors[name] = f"Keep this under {limit} characters."
    for name in ("subject", "button_text"):
        if not values.get(name, "").strip() and name not in errors:
            errors[name] = "This can't be empty."
    if for_save and not values.get("name", "").strip():
        errors["name"] = "Give this email a name."
    color = values.get("brand_color", "")
    if color and not _HEX_COLOR.match(color):
        errors["brand_color"] = "Use a hex colour, like #008060, or leave empty for the shop's."
    logo = values.get("logo_url", "")
    if logo and not logo.startswith("https://"):
        errors["logo_url"] = "Use an https:// address of an image, or leave empty for the shop's."
    return errors


def save(template: EmailTemplate, values: Mapping[str, Any]) -> None:
    locale = values["locale"]
    defaults = copy.default_fields(template.kind, locale)
    changed = {name: values[name] for name in copy.FIELD_NAMES
               if values[name].strip() and values[name] != defaults[name]}
    fields = {k: v for k, v in (template.fields or {}).items() if k != locale}
    if changed:
        fields[locale] = changed
    template.fields = fields  # a new dict, so the JSON column is written
    template.name = values["name"]
    template.brand_color = values["brand_color"]
    template.logo_url = values["logo_url"]
