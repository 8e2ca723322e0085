"""A local stand-in for Shopify: OAuth, token exchange and refresh, Admin GraphQL, signed webhooks.

`okapp shopify-sim` runs it as a server; tests start it in a thread (`Simulator.start()`); the demo
starts it and seeds its shop through it. Point the app at it with
`SHOPIFY_ADMIN_BASE_URL=http://127.0.0.1:<port>/{shop}`.
"""

from okapp.shopify.simulator.server import Simulator

__all__ = ["Simulator"]
