"""Moving one enrollment through its blocks: the engine's rules in one pure function.

`advance()` works on plain values (a `Traveller` and a `Context` that the caller filled from the
database) and returns an `Outcome`: where the enrollment stops, when it is due next, which
messages to create, what to write in the journal and which counters move. Recruitment applies
the outcome to one row; the scheduler tick applies thousands with a few set-based statements.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from okapp.models import BlockKind, EnrollmentState, Shop
from okapp.sequences.timing import SendWindow, wait_due

MAX_STEPS = 64  # a journey has a handful of blocks; this only guards against a corrupt tree


@dataclass
class BlockInfo:
    id: int
    sequence_id: int
    kind: str
    config: dict
    next: dict[str, int | None]  # branch ("" for a plain chain) -> next block id


@dataclass(slots=True)
class OrderFacts:
    id: int
    fulfilled_at: datetime | None
    delivered_at: datetime | None
    shipping_country: str
    cancelled: bool
    refunded: bool
    partially_refunded: bool


@dataclass
class ReviewFacts:
    rating: int
    has_media: bool


@dataclass(slots=True)
class Traveller:
    enrollment_id: int
    shop_id: int
    sequence_id: int
    email: str
    block_id: int
    entered_at: datetime | None
    due_at: datetime | None
    recruited_at: datetime
    lookback: bool
    order: OrderFacts
    counted_waiting: bool = True  # whether the counters count it as waiting in `block_id`


@dataclass
class NewMessage:
    block_id: int
    email_template_id: int | None
    kind: str


@dataclass
class Outcome:
    block_id: int
    state: str
    due_at: datetime | None
    entered_at: datetime | None
    exit_reason: str = ""
    messages: list[NewMessage] = field(default_factory=list)
    steps: list[tuple[int | None, datetime, str, str]] = field(default_factory=list)
    counters: Counter = field(default_factory=Counter)  # (sequence_id, block_id, name) -> delta
    changed: bool = False


@dataclass
class Context:
    """What the engine needs to know beyond the traveller; filled in bulk by the caller."""

    now: datetime
    shops: dict[int, Shop]
    blocks: dict[int, BlockInfo]
    email_kinds: dict[int, str]  # email template id -> kind
    suppressed: dict[tuple[int, str], str] = field(default_factory=dict)  # (shop, email) -> reason
    # (shop, email) -> [(enrollment id, queued at)] of review emails already queued or sent
    recent_emails: dict[tuple[int, str], list[tuple[int, datetime]]] = field(default_factory=dict)
    reviews: dict[int, list[ReviewFacts]] = field(default_factory=dict)  # enrollment id -> reviews
    windows: dict[int, SendWindow] = field(default_factory=dict)

    def window(self, shop_id: int) -> SendWindow:
        if shop_id not in self.windows:
            self.windows[shop_id] = SendWindow.of(self.shops[shop_id])
        return self.windows[shop_id]


EXIT_REASONS = {
    "order_cancelled": "the order was cancelled",
    "order_refunded": "the order was refunded",
    "suppressed": "the address must not be emailed",
}


def exit_reason(t: Traveller, ctx: Context) -> tuple[str, str] | None:
    if t.order.cancelled:
        return "order_cancelled", EXIT_REASONS["order_cancelled"]
    if t.order.refunded or t.order.partially_refunded:
        return "order_refunded", EXIT_REASONS["order_refunded"]
    why = ctx.suppressed.get((t.shop_id, t.email))
    if why:
        return "suppressed", f"the address is suppressed ({why})"
    return None


def split_branch(condition: str, reviews: list[ReviewFacts]) -> str:
    """The branch a SPLIT sends an enrollment down, from the reviews written since recruitment."""
    if condition == "review_media":
        if not reviews:
            return "no_review"
        if max(r.rating for r in reviews) >= 4 and not any(r.has_media for r in reviews):
            return "high_rating_no_media"
        return "other"
    return "yes" if reviews else "no"


def _earliest_send(t: Traveller, ctx: Context, shop: Shop) -> tuple[datetime, str]:
    """When this email may go: after the gap since the address's last review email for another
    order, inside the send window."""
    now = ctx.now
    earliest, why = now, ""
    gap_days = int(shop.setting("min_days_between_emails"))
    if gap_days > 0:
        others = [at for eid, at in ctx.recent_emails.get((t.shop_id, t.email), [])
                  if eid != t.enrollment_id]
        if others:
            free_at = max(others) + timedelta(days=gap_days)
            if free_at > now:
                earliest = free_at
                why = f"another review email went to this address within {gap_days} days"
    placed = ctx.window(t.shop_id).place(earliest)
    if placed > earliest and not why:
        why = "outside the shop's send window"
    return placed, why


def advance(t: Traveller, ctx: Context, arriving: bool, not_before: datetime | None = None,
            stop_before_send: bool = False) -> Outcome:
    """Run the enrollment's blocks until it has to wait, ends or exits.

    `arriving`: the enrollment has just reached `t.block_id` (its due time is not computed yet);
    otherwise its due time has come. `not_before` holds back the first wait (lookback drip).
    `stop_before_send`: leave a reached SEND to the scheduler (recruitment never enqueues).
    """
    now = ctx.now
    out = Outcome(t.block_id, EnrollmentState.WAITING.value, t.due_at, t.entered_at)
    start_block = t.block_id
    block = ctx.blocks[t.block_id]
    shop = ctx.shops[t.shop_id]
    for _ in range(MAX_STEPS):
        exit_ = exit_reason(t, ctx)
        if exit_:
            out.state, out.exit_reason, out.due_at = EnrollmentState.EXITED.value, exit_[0], None
            out.steps.append((block.id, now, "exited", exit_[1]))
            out.counters[(block.sequence_id, block.id, f"exited:{exit_[0]}")] += 1
            break
        branch = ""
        if block.kind == BlockKind.WAIT.value:
            if arriving:
                due = wait_due(shop, t.order, block.config, out.entered_at or now)
                due_at = due.due_at or now
                if not_before and not_before > due_at:
                    due_at, why = not_before, f"{due.why}; lookback sends drip at the shop's hourly rate"
                else:
                    why = due.why
                not_before = None  # holds back the first wait only
                if due_at > now:
                    out.due_at = due_at
                    out.steps.append((block.id, now, "waiting", f"until {due_at.isoformat()}: {why}"))
                    break
                out.steps.append((block.id, now, "waited", f"{why}: already due"))
            # A wait that simply ran out needs no entry: "waiting until …" said when it ends.
        elif block.kind == BlockKind.SEND.value:
            when, why = _earliest_send(t, ctx, shop)
            if stop_before_send and when <= now:
                out.due_at = now
                break
            if when > now:
                if when != out.due_at or arriving:
                    out.steps.append((block.id, now, "deferred", f"until {when.isoformat()}: {why}"))
                out.due_at = when
                break
            template_id = block.config.get("email_template_id")
            kind = ctx.email_kinds.get(template_id, "request")
            out.messages.append(NewMessage(block.id, template_id, kind))
            ctx.recent_emails.setdefault((t.shop_id, t.email), []).append((t.enrollment_id, now))
            # No journal row: the Message row itself (queued_at, state) is the record.
            out.counters[(block.sequence_id, block.id, "queued")] += 1
        elif block.kind == BlockKind.SPLIT.value:
            condition = block.config.get("condition", "reviewed")
            branch = split_branch(condition, ctx.reviews.get(t.enrollment_id, []))
            out.steps.append((block.id, now, "split", f"{condition}: {branch}"))
        following = block.next.get(branch)
        if following is None:
            # No journal row: explain() reads "complete" from the enrollment's state.
            out.state, out.due_at = EnrollmentState.DONE.value, None
            break
        block = ctx.blocks[following]
        out.block_id, out.entered_at, arriving = block.id, now, True
    if t.counted_waiting:
        out.counters[(ctx.blocks[start_block].sequence_id, start_block, "waiting")] -= 1
    if out.state == EnrollmentState.WAITING.value:
        out.counters[(block.sequence_id, out.block_id, "waiting")] += 1
    out.changed = (out.block_id != start_block or out.state != EnrollmentState.WAITING.value
                   or out.due_at != t.due_at or bool(out.messages))
    return out

