"""The yardstick for bench/webhooks.py: a bare Flask POST endpoint under the same gunicorn."""

from flask import Flask, request

app = Flask(__name__)


@app.post("/webhooks/fulfillments")
def receive():
    request.get_data()
    return "", 200
