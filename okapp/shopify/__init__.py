"""Everything that speaks Shopify: auth, webhooks, the GraphQL client, sync, and the simulator."""
