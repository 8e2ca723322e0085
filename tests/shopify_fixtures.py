"""Fixtures for the Shopify tests: a running simulator the app talks to over real HTTP."""

from __future__ import annotations

import pytest
from rq import SimpleWorker

from okapp.shopify.simulator import Simulator


@pytest.fixture(name="simulator")
def simulator_fixture():
    sim = Simulator("test-client-id", "test-client-secret-0123456789abcdef").start()
    yield sim
    sim.stop()


@pytest.fixture(name="config")
def config_with_simulator(config, simulator):
    """The suite's config, with Shopify served by the simulator."""
    config.shopify_admin_base_url = simulator.admin_base_url
    return config


def forward_webhooks(client, sim: Simulator, start: int = 0) -> list:
    """Post the webhooks the simulator produced (from index `start`) to the app; their answers."""
    answers = []
    for delivery in sim.deliveries[start:]:
        answers.append(client.post(sim.routes.get(delivery["topic"], "/webhooks"),
                                   data=delivery["body"], headers=delivery["headers"]))
    return answers


class _BurstWorker(SimpleWorker):
    """In-process, without RQ's command channel (closing its pubsub thread can wait a minute)."""

    def subscribe(self):
        pass

    def unsubscribe(self):
        pass


def run_jobs(runtime, *queues: str) -> None:
    """Work the queues until empty, in this process (no fork), as a worker would."""
    names = queues or ("webhooks", "default")
    _BurstWorker([runtime.queue(n) for n in names], connection=runtime.redis).work(burst=True)


def install(client, sim: Simulator, sub: str):
    """Open the app as the admin would (ID token in the query): managed install."""
    return client.get(f"/sequences?embedded=1&shop={sub}.myshopify.com&id_token={sim.id_token(sub)}")
