"""Entry point for `gunicorn app:app` and `flask --app app`."""

from okapp import create_app

app = create_app()
