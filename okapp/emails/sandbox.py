"""Merchant-written email fields as sandboxed Jinja with an explicit allow-list of variables.

A merchant may write `{{ customer.first_name }}`, `{{ shop.name }}`, `{{ order.name }}`, `{% if %}`
and a few text filters; nothing else. `check()` is what the editor runs on save, so an unknown
variable or a forbidden construct is reported to the merchant, not discovered at send time.
Rendering produces plain text: whatever HTML a field holds is escaped later by the layout.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

from jinja2 import StrictUndefined, TemplateSyntaxError, nodes
from jinja2.sandbox import SandboxedEnvironment

# What a merchant may reference: variable -> its attributes. Keep README/editor help in sync.
ALLOWED_VARIABLES: dict[str, tuple[str, ...]] = {
    "customer": ("first_name", "last_name", "name"),
    "shop": ("name",),
    "order": ("name",),
}
ALLOWED_FILTERS = frozenset({"upper", "lower", "title", "capitalize", "trim", "default"})
# Template structure a merchant may use; calls, subscripts, loops, macros, imports are not here.
_ALLOWED_NODES = (
    nodes.Template, nodes.Output, nodes.TemplateData, nodes.Name, nodes.Getattr, nodes.Filter,
    nodes.Const, nodes.If, nodes.Not, nodes.And, nodes.Or, nodes.Compare, nodes.Operand,
    nodes.CondExpr, nodes.Concat,
)

_env = SandboxedEnvironment(autoescape=False, undefined=StrictUndefined)


class FieldError(ValueError):
    """A merchant field that may not be saved; the message says why, in the merchant's terms."""


@dataclass(frozen=True)
class Variables:
    """The values behind the allow-list, for one recipient (or the preview's sample one)."""

    customer_first_name: str = ""
    customer_last_name: str = ""
    shop_name: str = ""
    order_name: str = ""

    def as_context(self) -> dict[str, dict[str, str]]:
        full = " ".join(p for p in (self.customer_first_name, self.customer_last_name) if p)
        return {
            "customer": {"first_name": self.customer_first_name,
                         "last_name": self.customer_last_name, "name": full},
            "shop": {"name": self.shop_name},
            "order": {"name": self.order_name},
        }


def allowed_names() -> list[str]:
    """`customer.first_name`, ... for the editor's help text."""
    return [f"{var}.{attr}" for var, attrs in ALLOWED_VARIABLES.items() for attr in attrs]


def _describe(node: nodes.Node) -> str:
    if isinstance(node, nodes.Getattr) and isinstance(node.node, nodes.Name):
        return f"{node.node.name}.{node.attr}"
    if isinstance(node, nodes.Name):
        return node.name
    return type(node).__name__


@lru_cache(maxsize=1024)
def _compiled(source: str):
    """Checked and compiled once per distinct text: a send renders the same fields thousands of
    times."""
    check(source)
    return _env.from_string(source)


def check(source: str) -> None:
    """Raise FieldError unless `source` only uses the allowed variables, filters and tags."""
    try:
        tree = _env.parse(source)
    except TemplateSyntaxError as exc:
        raise FieldError(f"line {exc.lineno}: {exc.message}") from exc
    for node in tree.find_all(nodes.Node):
        if not isinstance(node, _ALLOWED_NODES):
            raise FieldError(f"{_describe(node)} is not allowed here; use only "
                             f"{', '.join('{{ ' + n + ' }}' for n in allowed_names())}")
        if isinstance(node, nodes.Name):
            if node.name not in ALLOWED_VARIABLES:
                raise FieldError(f"unknown variable {node.name!r}; available: "
                                 f"{', '.join(allowed_names())}")
        elif isinstance(node, nodes.Getattr):
            # Only one level: customer.first_name, never customer.first_name.__class__.
            if not isinstance(node.node, nodes.Name):
                raise FieldError(f"'.{node.attr}' is not allowed here; use only "
                                 f"{', '.join('{{ ' + n + ' }}' for n in allowed_names())}")
            if node.attr not in ALLOWED_VARIABLES.get(node.node.name, ()):
                raise FieldError(f"unknown variable {_describe(node)!r}; available: "
                                 f"{', '.join(allowed_names())}")
        elif isinstance(node, nodes.Filter) and node.name not in ALLOWED_FILTERS:
            raise FieldError(f"filter {node.name!r} is not allowed; use one of "
                             f"{', '.join(sorted(ALLOWED_FILTERS))}")
    for node in tree.find_all(nodes.Name):
        if node.ctx != "load":
            raise FieldError(f"assigning {node.name!r} is not allowed")


def check_fields(fields: Mapping[str, str]) -> dict[str, str]:
    """Every field's problem, keyed by field name (empty when all may be saved)."""
    errors: dict[str, str] = {}
    for name, source in fields.items():
        try:
            check(source or "")
        except FieldError as exc:
            errors[name] = str(exc)
    return errors


def render_field(source: str, variables: Variables) -> str:
    """Plain text. A field that somehow fails the check (saved before a rule tightened) is shown
    literally instead of being executed or breaking the send."""
    try:
        return _compiled(source).render(variables.as_context())
    except Exception:  # noqa: BLE001 — any failure means: show the merchant's text as typed
        return source
