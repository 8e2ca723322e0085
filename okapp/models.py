"""The domain of DESIGN §2 as typed SQLAlchemy models.

The database carries the rules that must never break, so that no code path can get around them:
one enrollment per (sequence, order), one message per (enrollment, block), at most one running
sequence per shop, each webhook stored once.
"""

from __future__ import annotations

import enum
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from okapp.db import Base, EncryptedString, UTCDateTime, utcnow


class SequenceStatus(enum.StrEnum):
    DRAFT = "draft"
    RUNNING = "running"
    STOPPED = "stopped"


class BlockKind(enum.StrEnum):
    RECRUIT = "recruit"
    WAIT = "wait"
    SEND = "send"
    SPLIT = "split"


class EnrollmentState(enum.StrEnum):
    WAITING = "waiting"
    DONE = "done"
    EXITED = "exited"


class MessageState(enum.StrEnum):
    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    SKIPPED = "skipped"


class ReviewStatus(enum.StrEnum):
    PENDING = "pending"
    PUBLISHED = "published"
    REJECTED = "rejected"


class EmailKind(enum.StrEnum):
    REQUEST = "request"
    REMINDER = "reminder"
    SECOND_REMINDER = "second_reminder"
    MEDIA_REQUEST = "media_request"


# Per-shop settings live in one JSON column; these are the defaults a new shop starts with.
SHOP_SETTING_DEFAULTS: dict[str, Any] = {
    "sender_name": "",  # empty: the shop's name
    "reply_to": "",  # empty: the shop's contact email
    "postal_address": "",
    "send_window_start": "09:00",
    "send_window_end": "20:00",
    "min_days_between_emails": 5,
    "max_products_per_email": 5,
    "delivery_fallback_days": 14,
    "not_arrived_delay_days": 7,
    "lookback_age_cap_days": 180,
    "lookback_hourly_rate": 200,
    "exclude_product_tag": "no-review",
    "brand_color": "#008060",
    "logo_url": "",
}


def _enum_check(column: str, values: type[enum.StrEnum]) -> CheckConstraint:
    allowed = ", ".join(f"'{v.value}'" for v in values)
    return CheckConstraint(f"{column} IN ({allowed})", name=f"{column}_valid")


class Shop(Base):
    __tablename__ = "shops"

    id: Mapped[int] = mapped_column(primary_key=True)
    domain: Mapped[str] = mapped_column(String(255), unique=True)  # foo.myshopify.com
    name: Mapped[str] = mapped_column(String(255), default="")
    email: Mapped[str] = mapped_column(String(320), default="")
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")  # IANA name
    country: Mapped[str] = mapped_column(String(2), default="")  # ISO 3166-1 alpha-2
    currency: Mapped[str] = mapped_column(String(3), default="USD")
    locale: Mapped[str] = mapped_column(String(16), default="en")
    access_token: Mapped[str | None] = mapped_column(EncryptedString(1024))
    access_token_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    refresh_token: Mapped[str | None] = mapped_column(EncryptedString(1024))
    refresh_token_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    scopes: Mapped[str] = mapped_column(String(1024), default="")
    installed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    uninstalled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Set when the refresh token is dead: sends pause until the merchant opens the app again.
    needs_reauth: Mapped[bool] = mapped_column(Boolean, default=False)
    settings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    sequences: Mapped[list[Sequence]] = relationship(back_populates="shop")

    @property
    def is_installed(self) -> bool:
        return self.installed_at is not None and self.uninstalled_at is None

    def setting(self, key: str) -> Any:
        return (self.settings or {}).get(key, SHOP_SETTING_DEFAULTS[key])

    def __repr__(self) -> str:
        return f"<Shop {self.domain}>"


class Product(Base):
    __tablename__ = "products"
    __table_args__ = (UniqueConstraint("shop_id", "gid"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"), index=True)
    gid: Mapped[str] = mapped_column(String(128))  # gid://shopify/Product/123
    title: Mapped[str] = mapped_column(String(512), default="")
    handle: Mapped[str] = mapped_column(String(255), default="")
    image_url: Mapped[str] = mapped_column(String(2048), default="")
    status: Mapped[str] = mapped_column(String(16), default="ACTIVE")
    product_type: Mapped[str] = mapped_column(String(255), default="")
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    price: Mapped[Decimal] = mapped_column(Numeric(12, 2), default=Decimal("0"))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class Order(Base):
    __tablename__ = "orders"
    __table_args__ = (
        UniqueConstraint("shop_id", "gid"),
        Index("ix_orders_shop_email", "shop_id", "email"),
        Index("ix_orders_shop_name", "shop_id", "name"),
        Index("ix_orders_shop_fulfilled", "shop_id", "fulfilled_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    gid: Mapped[str] = mapped_column(String(128))  # gid://shopify/Order/123
    name: Mapped[str] = mapped_column(String(64), default="")  # "#1001"
    email: Mapped[str] = mapped_column(String(320), default="")  # lower-cased
    customer_gid: Mapped[str] = mapped_column(String(128), default="")
    customer_first_name: Mapped[str] = mapped_column(String(255), default="")
    customer_last_name: Mapped[str] = mapped_column(String(255), default="")
    customer_locale: Mapped[str] = mapped_column(String(16), default="")
    shipping_country: Mapped[str] = mapped_column(String(2), default="")  # "" = no address
    financial_status: Mapped[str] = mapped_column(String(32), default="")  # PAID, REFUNDED, ...
    fulfillment_status: Mapped[str] = mapped_column(String(32), default="")  # FULFILLED, ...
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    refunded: Mapped[bool] = mapped_column(Boolean, default=False)
    partially_refunded: Mapped[bool] = mapped_column(Boolean, default=False)
    test: Mapped[bool] = mapped_column(Boolean, default=False)
    currency: Mapped[str] = mapped_column(String(3), default="")
    total_price: Mapped[Decimal] = mapped_column(Numeric(12, 2), default=Decimal("0"))
    placed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # processedAt
    # The order as Shopify last described it; older deliveries of the same order are ignored.
    shopify_updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Derived from fulfillments: set once every shippable item has shipped (the last fulfillment),
    # and once every parcel has arrived (the last delivery).
    fulfilled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Set by the send job when a review request for this order is first sent, by any sequence:
    # the "never asked twice" rule survives a sequence being deleted.
    review_requested_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    synced_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    line_items: Mapped[list[LineItem]] = relationship(
        back_populates="order", cascade="all, delete-orphan", order_by="LineItem.id"
    )
    fulfillments: Mapped[list[Fulfillment]] = relationship(
        back_populates="order", cascade="all, delete-orphan", order_by="Fulfillment.id"
    )


class LineItem(Base):
    __tablename__ = "line_items"
    __table_args__ = (UniqueConstraint("order_id", "gid"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"), index=True)
    gid: Mapped[str] = mapped_column(String(128))
    product_gid: Mapped[str] = mapped_column(String(128), default="")
    variant_gid: Mapped[str] = mapped_column(String(128), default="")
    title: Mapped[str] = mapped_column(String(512), default="")
    variant_title: Mapped[str] = mapped_column(String(512), default="")
    image_url: Mapped[str] = mapped_column(String(2048), default="")
    quantity: Mapped[int] = mapped_column(Integer, default=1)
    refunded_quantity: Mapped[int] = mapped_column(Integer, default=0)
    price: Mapped[Decimal] = mapped_column(Numeric(12, 2), default=Decimal("0"))
    requires_shipping: Mapped[bool] = mapped_column(Boolean, default=True)
    gift_card: Mapped[bool] = mapped_column(Boolean, default=False)
    fulfilled_quantity: Mapped[int] = mapped_column(Integer, default=0)

    order: Mapped[Order] = relationship(back_populates="line_items")


class Fulfillment(Base):
    __tablename__ = "fulfillments"
    __table_args__ = (UniqueConstraint("order_id", "gid"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"), index=True)
    gid: Mapped[str] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(32), default="SUCCESS")  # SUCCESS, CANCELLED, ...
    display_status: Mapped[str] = mapped_column(String(32), default="")  # DELIVERED, IN_TRANSIT ...
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    shopify_updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # line item gid -> quantity shipped in this parcel
    line_item_quantities: Mapped[dict[str, int]] = mapped_column(JSON, default=dict)

    order: Mapped[Order] = relationship(back_populates="fulfillments")


class EmailTemplate(Base):
    """A merchant-editable email. The MJML layout lives in templates/emails/<kind>.mjml."""

    __tablename__ = "email_templates"
    __table_args__ = (_enum_check("kind", EmailKind),)

    id: Mapped[int] = mapped_column(primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(255))
    # Merchant fields per locale; an absent locale falls back to the built-in copy.
    # {"subject", "preheader", "heading", "body", "button_text"}
    fields: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    brand_color: Mapped[str] = mapped_column(String(16), default="")
    logo_url: Mapped[str] = mapped_column(String(2048), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class Sequence(Base):
    __tablename__ = "sequences"
    __table_args__ = (
        _enum_check("status", SequenceStatus),
        # At most one running sequence per shop, enforced by the database on both backends.
        Index(
            "uq_sequences_one_running_per_shop",
            "shop_id",
            unique=True,
            postgresql_where=text("status = 'running'"),
            sqlite_where=text("status = 'running'"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    template: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default=SequenceStatus.DRAFT.value)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    stopped_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Lookback import progress, shown as a progress bar while past orders are fetched.
    lookback_state: Mapped[str] = mapped_column(String(16), default="")  # "", running, done, failed
    lookback_total: Mapped[int] = mapped_column(Integer, default=0)
    lookback_done: Mapped[int] = mapped_column(Integer, default=0)
    lookback_error: Mapped[str] = mapped_column(Text, default="")

    shop: Mapped[Shop] = relationship(back_populates="sequences")
    blocks: Mapped[list[Block]] = relationship(
        back_populates="sequence", cascade="all, delete-orphan", order_by="Block.position"
    )


class Block(Base):
    """One step of a sequence. Blocks form a tree: each names its parent and, under a SPLIT,
    the branch of the parent it hangs on."""

    __tablename__ = "blocks"
    __table_args__ = (_enum_check("kind", BlockKind),)

    id: Mapped[int] = mapped_column(primary_key=True)
    sequence_id: Mapped[int] = mapped_column(
        ForeignKey("sequences.id", ondelete="CASCADE"), index=True
    )
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("blocks.id", ondelete="CASCADE"))
    branch: Mapped[str] = mapped_column(String(32), default="")  # "" unless under a SPLIT
    position: Mapped[int] = mapped_column(Integer, default=0)  # drawing order
    kind: Mapped[str] = mapped_column(String(16))
    # RECRUIT: start_date, end_date; WAIT: anchor, domestic_days, international_days;
    # SEND: email_template_id; SPLIT: condition.
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    sequence: Mapped[Sequence] = relationship(back_populates="blocks")


class Enrollment(Base):
    """One order travelling through one sequence: the row the scheduler polls."""

    __tablename__ = "enrollments"
    __table_args__ = (
        UniqueConstraint("sequence_id", "order_id"),
        _enum_check("state", EnrollmentState),
        # The scheduler's query: waiting rows by due time. Partial, so finished rows cost nothing.
        Index(
            "ix_enrollments_due",
            "due_at",
            postgresql_where=text("state = 'waiting'"),
            sqlite_where=text("state = 'waiting'"),
        ),
        Index("ix_enrollments_block_state", "block_id", "state"),
        Index("ix_enrollments_shop_email", "shop_id", "email"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # No index of its own: (shop_id, email) serves lookups by shop, and each index costs every
    # scheduler transition.
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    sequence_id: Mapped[int] = mapped_column(ForeignKey("sequences.id", ondelete="CASCADE"))
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"), index=True)
    block_id: Mapped[int | None] = mapped_column(ForeignKey("blocks.id", ondelete="SET NULL"))
    email: Mapped[str] = mapped_column(String(320), default="")
    state: Mapped[str] = mapped_column(String(16), default=EnrollmentState.WAITING.value)
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    exit_reason: Mapped[str] = mapped_column(String(64), default="")
    lookback: Mapped[bool] = mapped_column(Boolean, default=False)
    recruited_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # When the enrollment reached its current block: a WAIT after an email counts from here.
    entered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    order: Mapped[Order] = relationship()
    sequence: Mapped[Sequence] = relationship()
    block: Mapped[Block | None] = relationship()


class JourneyStep(Base):
    """What happened to an enrollment, in order: the record `explain(order)` reads."""

    __tablename__ = "journey_steps"

    id: Mapped[int] = mapped_column(primary_key=True)
    enrollment_id: Mapped[int] = mapped_column(
        ForeignKey("enrollments.id", ondelete="CASCADE"), index=True
    )
    block_id: Mapped[int | None] = mapped_column(ForeignKey("blocks.id", ondelete="SET NULL"))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    event: Mapped[str] = mapped_column(String(64))  # recruited, waited, split, sent, deferred ...
    detail: Mapped[str] = mapped_column(Text, default="")


class RecruitSkip(Base):
    """Why an order was not recruited into a sequence (one row per order and sequence)."""

    __tablename__ = "recruit_skips"
    __table_args__ = (UniqueConstraint("sequence_id", "order_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"), index=True)
    sequence_id: Mapped[int] = mapped_column(ForeignKey("sequences.id", ondelete="CASCADE"))
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"), index=True)
    reason: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UTCDateTime)


class Message(Base):
    """One email for one enrollment at one SEND block: the row that makes a send happen once."""

    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("enrollment_id", "block_id"),
        _enum_check("state", MessageState),
        Index("ix_messages_shop_recipient_sent", "shop_id", "recipient", "sent_at"),
        Index("ix_messages_block_state", "block_id", "state"),
        Index("ix_messages_state_claimed", "state", "claimed_at"),
        # The scheduler re-enqueues queued messages whose job vanished; only queued rows indexed.
        Index("ix_messages_queued", "queued_at", postgresql_where=text("state = 'queued'"),
              sqlite_where=text("state = 'queued'")),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # No index of its own: (shop_id, recipient, sent_at) serves lookups by shop.
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    enrollment_id: Mapped[int] = mapped_column(ForeignKey("enrollments.id", ondelete="CASCADE"))
    block_id: Mapped[int] = mapped_column(ForeignKey("blocks.id", ondelete="CASCADE"))
    email_template_id: Mapped[int | None] = mapped_column(
        ForeignKey("email_templates.id", ondelete="SET NULL")
    )
    kind: Mapped[str] = mapped_column(String(32), default=EmailKind.REQUEST.value)
    recipient: Mapped[str] = mapped_column(String(320))
    subject: Mapped[str] = mapped_column(String(998), default="")
    message_id_header: Mapped[str] = mapped_column(String(255), unique=True)
    state: Mapped[str] = mapped_column(String(16), default=MessageState.QUEUED.value)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    queued_at: Mapped[datetime] = mapped_column(UTCDateTime)
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # entered `sending`
    # Set (and committed) just before the email is handed to SMTP: a message found in `sending`
    # without it was never handed over and is safe to send again; with it, the outcome is unknown.
    delivery_started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    skip_reason: Mapped[str] = mapped_column(String(64), default="")
    error: Mapped[str] = mapped_column(Text, default="")
    opens: Mapped[int] = mapped_column(Integer, default=0)
    clicks: Mapped[int] = mapped_column(Integer, default=0)
    first_opened_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    first_clicked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    enrollment: Mapped[Enrollment] = relationship()


class BlockCounter(Base):
    """Running totals per block (waiting, sent, skipped:<reason> ...), so statistics pages never
    count big tables. A total is this row plus its not yet folded `BlockCounterDelta` rows."""

    __tablename__ = "block_counters"
    __table_args__ = (UniqueConstraint("block_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    sequence_id: Mapped[int] = mapped_column(
        ForeignKey("sequences.id", ondelete="CASCADE"), index=True
    )
    block_id: Mapped[int] = mapped_column(ForeignKey("blocks.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(80))
    value: Mapped[int] = mapped_column(Integer, default=0)


class BlockCounterDelta(Base):
    """A change to a block counter, written in the same transaction as the transition it counts.

    Inserted rather than added to the total: every recruit, advance and send of a sequence would
    otherwise update the same few rows and wait for each other's commit. The scheduler folds them
    into `BlockCounter` every loop (okapp.sequences.journal.fold_counters)."""

    __tablename__ = "block_counter_deltas"

    id: Mapped[int] = mapped_column(primary_key=True)
    sequence_id: Mapped[int] = mapped_column(
        ForeignKey("sequences.id", ondelete="CASCADE"), index=True
    )
    block_id: Mapped[int] = mapped_column(ForeignKey("blocks.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(80))
    value: Mapped[int] = mapped_column(Integer)


class Review(Base):
    __tablename__ = "reviews"
    __table_args__ = (
        # A customer reviews each product of an order once; coming back edits that review.
        UniqueConstraint("order_id", "product_id"),
        CheckConstraint("rating BETWEEN 1 AND 5", name="rating_range"),
        _enum_check("status", ReviewStatus),
        Index("ix_reviews_shop_email", "shop_id", "email"),
        Index("ix_reviews_shop_status", "shop_id", "status"),
        Index("ix_reviews_shop_created", "shop_id", "created_at"),  # the Reviews page, newest first
        # The scheduler credits new reviews to the email that asked for them (statistics).
        Index("ix_reviews_unattributed", "id", postgresql_where=text("attributed_at IS NULL"),
              sqlite_where=text("attributed_at IS NULL")),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id", ondelete="CASCADE"))
    order_id: Mapped[int | None] = mapped_column(ForeignKey("orders.id", ondelete="SET NULL"))
    email: Mapped[str] = mapped_column(String(320), default="")
    reviewer_name: Mapped[str] = mapped_column(String(255), default="")
    rating: Mapped[int] = mapped_column(Integer)
    title: Mapped[str] = mapped_column(String(255), default="")
    body: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(16), default=ReviewStatus.PENDING.value)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    # Set by the engine once the review is counted in the sequence statistics.
    attributed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    media: Mapped[list[ReviewMedia]] = relationship(
        back_populates="review", cascade="all, delete-orphan", order_by="ReviewMedia.id"
    )
    product: Mapped[Product] = relationship()


class ReviewMedia(Base):
    __tablename__ = "review_media"

    id: Mapped[int] = mapped_column(primary_key=True)
    review_id: Mapped[int] = mapped_column(ForeignKey("reviews.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(8))  # photo | video
    path: Mapped[str] = mapped_column(String(512))  # relative to the media root, random name
    content_type: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(Integer)
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    review: Mapped[Review] = relationship(back_populates="media")


class Suppression(Base):
    """An address (`jane@example.com`) or a whole domain (`*@example.com`) never to be emailed."""

    __tablename__ = "suppressions"
    __table_args__ = (UniqueConstraint("shop_id", "address"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    address: Mapped[str] = mapped_column(String(320))  # lower-cased
    reason: Mapped[str] = mapped_column(String(32))  # unsubscribe, bounce, complaint, blocklist
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class WebhookEvent(Base):
    """Every webhook received, stored once by Shopify's webhook id, processed by a worker."""

    __tablename__ = "webhook_events"
    # The drain's queue, in its exact order: a plan that needs no sort whatever the statistics.
    __table_args__ = (Index("ix_webhook_events_unprocessed", "received_at", "id",
                            postgresql_where=text("processed_at IS NULL"),
                            sqlite_where=text("processed_at IS NULL")),)

    id: Mapped[int] = mapped_column(primary_key=True)
    webhook_id: Mapped[str] = mapped_column(String(128), unique=True)
    event_id: Mapped[str] = mapped_column(String(128), default="", index=True)
    shop_domain: Mapped[str] = mapped_column(String(255), index=True)
    topic: Mapped[str] = mapped_column(String(64))
    api_version: Mapped[str] = mapped_column(String(16), default="")
    triggered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    payload: Mapped[str] = mapped_column(Text)  # the raw JSON body as received
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str] = mapped_column(Text, default="")


__all__ = [
    "Base", "Block", "BlockCounter", "BlockCounterDelta", "BlockKind", "EmailKind", "EmailTemplate", "Enrollment", "EnrollmentState",
    "Fulfillment", "JourneyStep", "LineItem", "Message", "MessageState", "Order", "Product",
    "RecruitSkip", "Review", "ReviewMedia", "ReviewStatus", "Sequence", "SequenceStatus", "Shop",
    "SHOP_SETTING_DEFAULTS", "Suppression", "WebhookEvent",
]
