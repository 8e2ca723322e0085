"""Loading travellers and their context from the database in bulk, and saving outcomes in bulk.

A few statements per batch, whatever the batch size: this is what keeps the tick's cost
proportional to the number of due rows and small per row.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

from sqlalchemy import Integer, String, Text, any_, bindparam, cast, func, select, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

from okapp.db import UTCDateTime
from okapp.emails.suppression import domain_entry
from okapp.models import (
    Block,
    BlockKind,
    EmailTemplate,
    Enrollment,
    LineItem,
    Message,
    MessageState,
    Order,
    Product,
    Review,
    ReviewMedia,
    Shop,
    Suppression,
)
from okapp.sequences.advance import (
    BlockInfo,
    Context,
    OrderFacts,
    Outcome,
    ReviewFacts,
    Traveller,
)
from okapp.sequences.journal import bump, record_many

ACTIVE_MESSAGE_STATES = (MessageState.QUEUED.value, MessageState.SENDING.value,
                         MessageState.SENT.value)


def block_infos(session: Session, sequence_ids: Iterable[int]) -> dict[int, BlockInfo]:
    rows = session.execute(
        select(Block.id, Block.sequence_id, Block.parent_id, Block.branch, Block.kind, Block.config,
               Block.position)
        .where(Block.sequence_id.in_(set(sequence_ids))).order_by(Block.position)
    ).all()
    infos = {r.id: BlockInfo(r.id, r.sequence_id, r.kind, r.config or {}, {}) for r in rows}
    for r in rows:
        parent = infos.get(r.parent_id)
        if parent is not None and r.branch not in parent.next:
            parent.next[r.branch] = r.id
    return infos


_REFUNDED = func.upper(Order.financial_status)
_TRAVELLER_COLUMNS = (
    Enrollment.id, Enrollment.shop_id, Enrollment.sequence_id, Enrollment.email,
    Enrollment.block_id, Enrollment.entered_at, Enrollment.due_at, Enrollment.recruited_at,
    Enrollment.lookback, Order.id.label("order_id"), Order.fulfilled_at, Order.delivered_at,
    Order.shipping_country,
    # Order flags computed by the database: fewer values to convert per row.
    Order.cancelled_at.is_not(None).label("cancelled"),
    (Order.refunded | (_REFUNDED == "REFUNDED")).label("refunded"),
    (Order.partially_refunded | (_REFUNDED == "PARTIALLY_REFUNDED")).label("partially_refunded"),
)


def _traveller(r) -> Traveller:
    return Traveller(
        r.id, r.shop_id, r.sequence_id, r.email, r.block_id, r.entered_at, r.due_at,
        r.recruited_at, r.lookback,
        OrderFacts(r.order_id, r.fulfilled_at, r.delivered_at, r.shipping_country or "",
                   bool(r.cancelled), bool(r.refunded), bool(r.partially_refunded)),
    )


def in_list(session: Session, column, values: Iterable, item_type):
    """`column IN (values)`; on PostgreSQL `= ANY(array)`, one parameter instead of thousands."""
    values = list(values)
    if session.get_bind().dialect.name == "postgresql":
        literal = bindparam(None, pg_array(values), type_=Text)  # bound as text, cast in SQL
        return column == any_(cast(literal, ARRAY(item_type)))
    return column.in_(values)


def load_travellers(session: Session, enrollment_ids: Sequence[int]) -> list[Traveller]:
    if not enrollment_ids:
        return []
    rows = session.execute(
        select(*_TRAVELLER_COLUMNS).join(Order, Order.id == Enrollment.order_id)
        .where(in_list(session, Enrollment.id, enrollment_ids, Integer)).order_by(Enrollment.id)
    ).all()
    return [_traveller(r) for r in rows]


def load_context(session: Session, now: datetime, travellers: list[Traveller],
                 shops: dict[int, Shop] | None = None,
                 blocks: dict[int, BlockInfo] | None = None) -> Context:
    """Everything `advance()` may ask about these travellers, in a handful of queries."""
    shop_ids = {t.shop_id for t in travellers}
    shops = dict(shops or {})
    missing = shop_ids - shops.keys()
    if missing:
        for shop in session.scalars(select(Shop).where(Shop.id.in_(missing))):
            shops[shop.id] = shop
    if blocks is None or any(t.block_id not in blocks for t in travellers):
        blocks = block_infos(session, {t.sequence_id for t in travellers})
    template_ids = {b.config.get("email_template_id") for b in blocks.values()
                    if b.kind == BlockKind.SEND.value} - {None}
    email_kinds = {}
    if template_ids:
        email_kinds = dict(session.execute(
            select(EmailTemplate.id, EmailTemplate.kind).where(EmailTemplate.id.in_(template_ids))
        ).all())
    ctx = Context(now=now, shops=shops, blocks=blocks, email_kinds=email_kinds)
    if not travellers:
        return ctx
    emails = {t.email for t in travellers if t.email}
    entries = emails | {domain_entry(e) for e in emails}
    for shop_id, address, reason in session.execute(
        select(Suppression.shop_id, Suppression.address, Suppression.reason)
        .where(Suppression.shop_id.in_(shop_ids), in_list(session, Suppression.address, entries, String))
    ):
        if address.startswith("*@"):
            for email in emails:
                if domain_entry(email) == address:
                    ctx.suppressed.setdefault((shop_id, email), reason)
        else:
            ctx.suppressed[(shop_id, address)] = reason
    # The gap between review emails across orders: first the other enrollments of these
    # addresses (usually none), then their messages through the (enrollment, block) key. Two
    # lookups on unique or selective keys, whose plans stay good even while `messages` grows
    # faster than its statistics (a first big tick).
    batch_ids = {t.enrollment_id for t in travellers}
    others = {row.id: (row.shop_id, row.email) for row in session.execute(
        select(Enrollment.id, Enrollment.shop_id, Enrollment.email)
        .where(Enrollment.shop_id.in_(shop_ids),
               in_list(session, Enrollment.email, emails, String)))
        if row.id not in batch_ids}
    within = {t.enrollment_id: (t.shop_id, t.email) for t in travellers}
    for enrollment_id, at in session.execute(
        select(Message.enrollment_id, func.max(Message.queued_at))
        .where(Message.enrollment_id.in_(list(others) + list(within)),
               Message.state.in_(ACTIVE_MESSAGE_STATES))
        .group_by(Message.enrollment_id)
    ) if others else ():
        key = others.get(enrollment_id) or within[enrollment_id]
        ctx.recent_emails.setdefault(key, []).append((enrollment_id, at))
    # Reviews only for those that may reach a SPLIT now: at one, or at a wait or send before one.
    near_split = [t for t in travellers if _split_ahead(blocks, t.block_id)]
    if near_split:
        ctx.reviews = load_reviews(session, near_split)
    return ctx


def _split_ahead(blocks: dict[int, BlockInfo], block_id: int, depth: int = 3) -> bool:
    block = blocks.get(block_id)
    for _ in range(depth):
        if block is None:
            return False
        if block.kind == BlockKind.SPLIT.value:
            return True
        block = blocks.get(block.next.get(""))
    return False


def load_reviews(session: Session, travellers: list[Traveller]) -> dict[int, list[ReviewFacts]]:
    """Per enrollment: the reviews its customer wrote since recruitment for the order's products
    (matched by email and product, or written through the order's own review link)."""
    order_ids = {t.order.id for t in travellers}
    products_of_order: dict[int, set[str]] = defaultdict(set)
    for order_id, gid in session.execute(
        select(LineItem.order_id, LineItem.product_gid).where(LineItem.order_id.in_(order_ids))
    ):
        products_of_order[order_id].add(gid)
    shop_ids = {t.shop_id for t in travellers}
    emails = {t.email for t in travellers}
    media_count = (select(func.count(ReviewMedia.id)).where(ReviewMedia.review_id == Review.id)
                   .correlate(Review).scalar_subquery())
    rows = session.execute(
        select(Review.shop_id, Review.email, Review.order_id, Review.rating, Review.created_at,
               Product.gid, media_count.label("media"))
        .join(Product, Product.id == Review.product_id)
        .where(Review.shop_id.in_(shop_ids),
               (Review.email.in_(emails)) | (Review.order_id.in_(order_ids)))
    ).all()
    out: dict[int, list[ReviewFacts]] = {}
    for t in travellers:
        mine = [
            ReviewFacts(r.rating, r.media > 0) for r in rows
            if r.shop_id == t.shop_id and r.created_at >= t.recruited_at
            and (r.order_id == t.order.id
                 or (r.email == t.email and r.gid in products_of_order[t.order.id]))
        ]
        out[t.enrollment_id] = mine
    return out


def message_id_header(enrollment_id: int, block_id: int, shop_id: int, mail_from: str) -> str:
    """Deterministic: the same (enrollment, block) always has the same Message-ID."""
    domain = mail_from.rpartition("@")[2] or "okapp.localhost"
    return f"<okapp.{shop_id}.{enrollment_id}.{block_id}@{domain}>"


def pg_array(values: Iterable) -> str:
    """A PostgreSQL array literal for CAST(:x AS type[]): one string, built with str.join,
    instead of psycopg adapting thousands of list items one by one. Integers, text (quoted and
    escaped), aware datetimes (as naive UTC, how UTCDateTime stores them) and None."""
    values = list(values)
    if all(type(v) is int for v in values):
        return "{" + ",".join(map(str, values)) + "}"

    def item(v) -> str:
        if v is None:
            return "NULL"
        if isinstance(v, int):
            return str(v)
        if isinstance(v, datetime):
            return '"' + v.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ") + '"'
        return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'
    return "{" + ",".join(map(item, values)) + "}"


# PostgreSQL: one statement per batch with arrays (unnest), whatever the batch size; the
# statements are plain text, so nothing is compiled per row.
_PG_UPDATE_ENROLLMENTS = text("""
    UPDATE enrollments AS e SET block_id = u.block_id, state = u.state, due_at = u.due_at,
        entered_at = u.entered_at, exit_reason = u.exit_reason, updated_at = :now
    FROM unnest(CAST(:ids AS int[]), CAST(:blocks AS int[]), CAST(:states AS text[]),
                CAST(:dues AS timestamp[]), CAST(:entered AS timestamp[]),
                CAST(:reasons AS text[])) AS u(id, block_id, state, due_at, entered_at, exit_reason)
    WHERE e.id = u.id""").bindparams(bindparam("now", type_=UTCDateTime()))
_PG_INSERT_MESSAGES = text("""
    INSERT INTO messages (shop_id, enrollment_id, block_id, email_template_id, kind, recipient,
        message_id_header, state, attempts, queued_at, subject, skip_reason, error, opens, clicks)
    SELECT u.shop_id, u.enrollment_id, u.block_id, u.template_id, u.kind, u.recipient, u.header,
        'queued', 0, :now, '', '', '', 0, 0
    FROM unnest(CAST(:shops AS int[]), CAST(:enrollments AS int[]), CAST(:blocks AS int[]),
                CAST(:templates AS int[]), CAST(:kinds AS text[]), CAST(:recipients AS text[]),
                CAST(:headers AS text[]))
         AS u(shop_id, enrollment_id, block_id, template_id, kind, recipient, header)
    ON CONFLICT (enrollment_id, block_id) DO NOTHING
    RETURNING id""").bindparams(bindparam("now", type_=UTCDateTime()))
_PG_INSERT_STEPS = text("""
    INSERT INTO journey_steps (enrollment_id, block_id, at, event, detail)
    SELECT * FROM unnest(CAST(:enrollments AS int[]), CAST(:blocks AS int[]),
                         CAST(:ats AS timestamp[]), CAST(:events AS text[]),
                         CAST(:details AS text[]))""")


def save_outcomes(session: Session, travellers: list[Traveller], outcomes: list[Outcome],
                  now: datetime, mail_from: str) -> list[int]:
    """Write outcomes: enrollment rows, new messages (insert-or-skip on their unique key),
    journal steps and counters. Returns the ids of the messages created."""
    changed = [(t, o) for t, o in zip(travellers, outcomes, strict=True) if o.changed]
    if not changed:
        return []
    postgres = session.get_bind().dialect.name == "postgresql"
    if postgres:
        session.execute(_PG_UPDATE_ENROLLMENTS, {
            "now": now, "ids": pg_array(t.enrollment_id for t, _ in changed),
            "blocks": pg_array(o.block_id for _, o in changed),
            "states": pg_array(o.state for _, o in changed),
            "dues": pg_array(o.due_at for _, o in changed),
            "entered": pg_array(o.entered_at for _, o in changed),
            "reasons": pg_array(o.exit_reason for _, o in changed)})
    else:
        table = Enrollment.__table__  # Core executemany: no ORM objects
        session.execute(
            table.update().where(table.c.id == bindparam("eid")).values(
                block_id=bindparam("block"), state=bindparam("st"), due_at=bindparam("due"),
                entered_at=bindparam("entered"), exit_reason=bindparam("reason"),
                updated_at=bindparam("now")),
            [{"eid": t.enrollment_id, "block": o.block_id, "st": o.state, "due": o.due_at,
              "entered": o.entered_at, "reason": o.exit_reason, "now": now} for t, o in changed],
        )
    message_rows = []
    for t, o in changed:
        for m in o.messages:
            message_rows.append({
                "shop_id": t.shop_id, "enrollment_id": t.enrollment_id, "block_id": m.block_id,
                "email_template_id": m.email_template_id, "kind": m.kind, "recipient": t.email,
                "message_id_header": message_id_header(t.enrollment_id, m.block_id, t.shop_id,
                                                       mail_from),
                "state": MessageState.QUEUED.value, "attempts": 0, "queued_at": now,
                "subject": "", "skip_reason": "", "error": "", "opens": 0, "clicks": 0,
            })
    created: list[int] = []
    if message_rows and postgres:
        created = list(session.scalars(_PG_INSERT_MESSAGES, {
            "now": now, **{key: pg_array(r[col] for r in message_rows) for key, col in (
                ("shops", "shop_id"), ("enrollments", "enrollment_id"), ("blocks", "block_id"),
                ("templates", "email_template_id"), ("kinds", "kind"),
                ("recipients", "recipient"), ("headers", "message_id_header"))}}))
    elif message_rows:
        from sqlalchemy.dialects.sqlite import insert as insert_or_skip

        for i in range(0, len(message_rows), 400):  # SQLite's bound-parameter limit
            stmt = (insert_or_skip(Message).values(message_rows[i:i + 400])
                    .on_conflict_do_nothing(index_elements=["enrollment_id", "block_id"])
                    .returning(Message.id))
            created.extend(session.scalars(stmt).all())
    steps = [(t.enrollment_id, b, at, event, detail)
             for t, o in changed for b, at, event, detail in o.steps]
    if steps and postgres:
        session.execute(_PG_INSERT_STEPS, {
            "enrollments": pg_array(s[0] for s in steps), "blocks": pg_array(s[1] for s in steps),
            "ats": pg_array(s[2] for s in steps), "events": pg_array(s[3] for s in steps),
            "details": pg_array(s[4] for s in steps)})
    elif steps:
        record_many(session, ({"enrollment_id": e, "block_id": b, "at": at, "event": event,
                               "detail": detail} for e, b, at, event, detail in steps))
    deltas: Counter = Counter()
    for _, o in changed:
        deltas.update(o.counters)  # update() adds, keeping negative deltas
    bump(session, deltas)
    return created
