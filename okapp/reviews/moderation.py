"""The merchant's side of reviews: the filtered list, the counts, publish and reject.

Every function takes the shop's id and filters by it first: a review id from another shop is
simply not found.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import Select, exists, func, select
from sqlalchemy.orm import Session, selectinload

from okapp.models import Order, Review, ReviewMedia, ReviewStatus

PER_PAGE = 25
MEDIA_FILTERS = ("with", "without")
STATUSES = tuple(s.value for s in ReviewStatus)


@dataclass(frozen=True)
class ReviewFilter:
    rating: int | None = None
    media: str = ""  # "", with, without
    status: str = ""  # "", pending, published, rejected
    page: int = 1

    @classmethod
    def from_args(cls, args: Mapping[str, str]) -> ReviewFilter:
        """Anything unexpected in the query string is ignored rather than an error."""
        rating = args.get("rating", "")
        page = args.get("page", "")
        return cls(
            rating=int(rating) if rating in ("1", "2", "3", "4", "5") else None,
            media=args.get("media", "") if args.get("media") in MEDIA_FILTERS else "",
            status=args.get("status", "") if args.get("status") in STATUSES else "",
            page=max(1, min(int(page), 10_000)) if page.isdigit() else 1,
        )

    def args(self, **change) -> dict[str, str | int]:
        """Query-string arguments of this filter with some changed (for links and paging)."""
        values = {"rating": self.rating or "", "media": self.media, "status": self.status,
                  "page": self.page, **change}
        return {k: v for k, v in values.items() if v and not (k == "page" and v == 1)}


_has_media = exists().where(ReviewMedia.review_id == Review.id)


def _filtered(shop_id: int, f: ReviewFilter) -> Select:
    query = select(Review).where(Review.shop_id == shop_id)
    if f.rating:
        query = query.where(Review.rating == f.rating)
    if f.status:
        query = query.where(Review.status == f.status)
    if f.media == "with":
        query = query.where(_has_media)
    elif f.media == "without":
        query = query.where(~_has_media)
    return query


@dataclass
class ReviewPage:
    reviews: list[Review]
    order_names: dict[int, str]
    total: int
    filter: ReviewFilter

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // PER_PAGE))


def list_reviews(session: Session, shop_id: int, f: ReviewFilter) -> ReviewPage:
    query = _filtered(shop_id, f)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    reviews = list(session.scalars(
        query.options(selectinload(Review.media), selectinload(Review.product))
        .order_by(Review.created_at.desc(), Review.id.desc())
        .limit(PER_PAGE).offset((f.page - 1) * PER_PAGE)))
    order_ids = {r.order_id for r in reviews if r.order_id}
    names = dict(session.execute(
        select(Order.id, Order.name).where(Order.shop_id == shop_id, Order.id.in_(order_ids))
    ).all()) if order_ids else {}
    return ReviewPage(reviews, names, total, f)


@dataclass
class ReviewCounts:
    total: int = 0
    pending: int = 0
    published: int = 0
    rejected: int = 0
    with_media: int = 0
    average: float | None = None


def counts(session: Session, shop_id: int) -> ReviewCounts:
    """One pass over the shop's reviews, and one over its media (usually far fewer rows)."""
    out = ReviewCounts()
    rating_sum = 0
    for status, count, ratings in session.execute(
        select(Review.status, func.count(), func.sum(Review.rating))
        .where(Review.shop_id == shop_id).group_by(Review.status)
    ):
        if status in STATUSES:
            setattr(out, status, count)
        out.total += count
        rating_sum += int(ratings or 0)
    out.average = round(rating_sum / out.total, 1) if out.total else None
    out.with_media = session.scalar(
        select(func.count(func.distinct(ReviewMedia.review_id)))
        .join(Review, Review.id == ReviewMedia.review_id).where(Review.shop_id == shop_id)) or 0
    return out


def set_status(session: Session, shop_id: int, review_id: int, status: str) -> Review | None:
    """Publish or reject one of the shop's reviews; None when it is not the shop's."""
    if status not in STATUSES:
        raise ValueError(f"unknown review status {status!r}")
    review = session.scalar(select(Review).where(Review.id == review_id,
                                                 Review.shop_id == shop_id))
    if review is not None and review.status != status:
        review.status = status
        session.commit()
    return review
