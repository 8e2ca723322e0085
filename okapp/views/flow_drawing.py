"""The small drawing of a template's flow in the template picker, laid out as SVG shapes.

The main chain runs left to right; a SPLIT fans out into one row per branch. The template's own
spec tree is the source, so a changed template redraws itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from okapp.models import BlockKind
from okapp.sequences.templates import Spec

CHIP_W, CHIP_H, GAP, ROW_H, PAD = 30, 16, 10, 22, 2
LETTER = {BlockKind.RECRUIT: "R", BlockKind.WAIT: "W", BlockKind.SEND: "S", BlockKind.SPLIT: "?"}


@dataclass
class Drawing:
    chips: list[dict] = field(default_factory=list)  # x, y, kind, letter
    lines: list[dict] = field(default_factory=list)  # x1, y1, x2, y2
    ends: list[dict] = field(default_factory=list)  # x, y: a branch that ends at once
    width: int = 0
    height: int = 0


def _draw(chain: list[Spec], x: int, row: int, out: Drawing) -> int:
    """Draw `chain` from (x, row); returns how many rows it used."""
    rows_used = 1
    y = PAD + row * ROW_H
    for spec in chain:
        out.chips.append({"x": x, "y": y, "kind": spec.kind.value, "letter": LETTER[spec.kind]})
        out.width = max(out.width, x + CHIP_W + PAD)
        if spec.kind is BlockKind.SPLIT:
            branch_row = row
            for sub_chain in spec.branches.values():
                by = PAD + branch_row * ROW_H + CHIP_H // 2
                bx = x + CHIP_W + GAP
                out.lines.append({"x1": x + CHIP_W // 2, "y1": y + CHIP_H // 2, "x2": bx, "y2": by})
                if sub_chain:
                    used = _draw(sub_chain, bx, branch_row, out)
                else:
                    out.ends.append({"x": bx + 3, "y": by})
                    out.width = max(out.width, bx + 6 + PAD)
                    used = 1
                branch_row += used
            return max(rows_used, branch_row - row)
        next_x = x + CHIP_W + GAP
        if spec is not chain[-1]:
            out.lines.append({"x1": x + CHIP_W, "y1": y + CHIP_H // 2, "x2": next_x,
                              "y2": y + CHIP_H // 2})
        x = next_x
    return rows_used


def mini_flow(chain: list[Spec]) -> Drawing:
    drawing = Drawing()
    rows = _draw(chain, PAD, 0, drawing)
    drawing.height = PAD * 2 + (rows - 1) * ROW_H + CHIP_H
    return drawing
