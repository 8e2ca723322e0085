"""A GraphQL client over the Admin API that waits instead of failing.

Requests go through `shopify_app.admin_graphql_request` (which retries 429 and 5xx). On top of it:
the cost-based throttle is respected from `extensions.cost` (a query waits until the bucket holds
its cost, and a THROTTLED answer waits for the bucket to refill), a 401 refreshes the token once,
network errors back off and retry, and every error names the query that failed.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator

from okapp.runtime import Runtime
from okapp.shopify import api, tokens
from okapp.shopify.tokens import ShopifyError

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 8


class GraphQLError(ShopifyError):
    def __init__(self, query_name: str, detail: str):
        super().__init__(f"GraphQL {query_name} failed: {detail}")
        self.query_name = query_name


class ThrottleBucket:
    """What we know of the shop's leaky bucket, from the last response's `throttleStatus`."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self.available: float | None = None
        self.maximum: float = 1000.0
        self.restore_rate: float = 100.0
        self.seen_at = 0.0

    def update(self, cost: dict | None) -> None:
        status = (cost or {}).get("throttleStatus") or {}
        if "currentlyAvailable" in status:
            self.available = float(status["currentlyAvailable"])
            self.maximum = float(status.get("maximumAvailable") or self.maximum)
            self.restore_rate = float(status.get("restoreRate") or self.restore_rate)
            self.seen_at = self.clock()

    def wait_for(self, cost: float) -> float:
        """Seconds to wait before a query of `cost` points fits in the bucket."""
        if self.available is None or cost <= 0:
            return 0.0
        projected = min(self.maximum, self.available + (self.clock() - self.seen_at) * self.restore_rate)
        needed = min(cost, self.maximum) - projected
        return max(0.0, needed / self.restore_rate)


class AdminClient:
    """Admin GraphQL for one shop, from any process (web, worker)."""

    def __init__(self, runtime: Runtime, shop_id: int, domain: str,
                 sleep: Callable[[float], None] = time.sleep):
        self.runtime = runtime
        self.shop_id = shop_id
        self.domain = domain
        self.sleep = sleep
        self.bucket = ThrottleBucket()
        self.query_costs: dict[str, float] = {}  # last requested cost per query name
        self.throttle_waits = 0  # how often we waited for the bucket (pre-emptively or told to)
        self.calls = 0

    def execute(self, name: str, query: str, variables: dict | None = None) -> dict:
        config = self.runtime.config
        app = api.shopify_app(config)
        rejected: str | None = None
        for attempt in range(MAX_ATTEMPTS):
            token = tokens.access_token(self.runtime, self.shop_id, rejected=rejected)
            self._respect_throttle(self.query_costs.get(name, 0.0))
            self.calls += 1
            result = app.admin_graphql_request(
                query, shop=api.subdomain(self.domain), access_token=token,
                api_version=config.shopify_api_version, variables=variables, max_retries=3,
                http_client=api.http_client(config),
            )
            if result.ok:
                cost = (result.extensions or {}).get("cost") or {}
                self.bucket.update(cost)
                if cost.get("requestedQueryCost") is not None:
                    self.query_costs[name] = float(cost["requestedQueryCost"])
                return result.data or {}
            status = result.response.status
            if status == 401:
                if rejected is not None:
                    raise GraphQLError(name, "access token rejected twice (401)")
                rejected = token
                continue
            if result.log.code == "graphql_errors":
                body = _json(result.response.body)
                errors = body.get("errors") or []
                cost = (body.get("extensions") or {}).get("cost") or {}
                if any((e.get("extensions") or {}).get("code") == "THROTTLED" for e in errors):
                    self.bucket.update(cost)
                    if cost.get("requestedQueryCost") is not None:
                        self.query_costs[name] = float(cost["requestedQueryCost"])
                    self._respect_throttle(self.query_costs.get(name, 0.0), told=True)
                    continue
                raise GraphQLError(name, "; ".join(str(e.get("message", e)) for e in errors))
            if result.log.code == "network_error" or status >= 500:
                delay = min(30.0, 0.5 * 2 ** attempt)
                log.warning("GraphQL %s for %s: %s, retrying in %.1fs", name, self.domain,
                            result.log.code, delay)
                self.sleep(delay)
                continue
            raise GraphQLError(name, f"HTTP {status} ({result.log.code})")
        raise GraphQLError(name, f"gave up after {MAX_ATTEMPTS} attempts")

    def _respect_throttle(self, cost: float, told: bool = False) -> None:
        wait = self.bucket.wait_for(cost)
        if told and wait <= 0:
            wait = 1.0 / max(self.bucket.restore_rate, 1.0)
        if wait > 0:
            self.throttle_waits += 1
            self.sleep(wait)

    def pages(self, name: str, query: str, connection: str, variables: dict) -> Iterator[list[dict]]:
        """Each page of nodes of a cursor-paginated connection at the top of `query`."""
        after = None
        while True:
            data = self.execute(name, query, {**variables, "after": after})
            conn = data[connection]
            yield conn["nodes"]
            if not conn["pageInfo"]["hasNextPage"]:
                return
            after = conn["pageInfo"]["endCursor"]


def _json(text: str) -> dict:
    try:
        value = json.loads(text or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
