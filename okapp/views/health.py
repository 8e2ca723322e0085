from flask import Blueprint, redirect, url_for
from sqlalchemy import text

from okapp.views import db

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    db().execute(text("SELECT 1"))
    return {"ok": True}


@bp.get("/")
def index():
    return redirect(url_for("sequences.index"))
