"""The Sequences page and the pages of one sequence."""

from __future__ import annotations

from flask import Blueprint, g
from sqlalchemy import select

from okapp.models import Sequence
from okapp.views import db, render
from okapp.views.auth import merchant_required

bp = Blueprint("sequences", __name__, url_prefix="/sequences")


@bp.get("")
@merchant_required
def index():
    sequences = db().scalars(
        select(Sequence).where(Sequence.shop_id == g.shop.id).order_by(Sequence.created_at.desc())
    ).all()
    return render("sequences/index.html", sequences=sequences)
