"""The Admin GraphQL queries okapp sends (field names as in the 2026-10 Admin API)."""

PRODUCT_FIELDS = """
  id title handle status productType tags updatedAt
  featuredMedia { preview { image { url } } }
  priceRangeV2 { maxVariantPrice { amount } }
"""

# Each line item carries its product whole: an order may name a product okapp has not seen yet
# (created after the install; there is no products webhook), and emails need its title and image.
ORDER_FIELDS = """
  id name createdAt processedAt updatedAt cancelledAt test
  displayFinancialStatus displayFulfillmentStatus
  email
  currencyCode
  totalPriceSet { shopMoney { amount currencyCode } }
  customerLocale
  customer { id firstName lastName defaultEmailAddress { emailAddress } }
  shippingAddress { countryCodeV2 }
  lineItems(first: 50) { nodes {
    id quantity title variantTitle requiresShipping isGiftCard
    originalUnitPriceSet { shopMoney { amount } }
    product { PRODUCT_FIELDS }
    variant { id image { url } }
    image { url }
  } }
  fulfillments(first: 20) {
    id status displayStatus createdAt updatedAt deliveredAt
    fulfillmentLineItems(first: 50) { nodes { quantity lineItem { id } } }
  }
  refunds(first: 20) { id createdAt refundLineItems(first: 50) { nodes { quantity lineItem { id } } } }
""".replace("PRODUCT_FIELDS", PRODUCT_FIELDS)

SHOP = """
query ShopDetails {
  shop {
    name email contactEmail ianaTimezone currencyCode myshopifyDomain
    billingAddress { countryCodeV2 }
    primaryDomain { host url }
  }
  app: currentAppInstallation { id }
}
"""

SHOP_LOCALE = """
query ShopLocale { shopLocales(published: true) { locale primary } }
"""

ORDERS = """
query Orders($first: Int!, $after: String, $query: String, $sortKey: OrderSortKeys) {
  orders(first: $first, after: $after, query: $query, sortKey: $sortKey) {
    pageInfo { hasNextPage endCursor }
    nodes { ORDER_FIELDS }
  }
}
""".replace("ORDER_FIELDS", ORDER_FIELDS)

ORDERS_COUNT = """
query OrdersCount($query: String) { ordersCount(query: $query, limit: null) { count precision } }
"""

ORDER = """
query Order($id: ID!) { order(id: $id) { ORDER_FIELDS } }
""".replace("ORDER_FIELDS", ORDER_FIELDS)

PRODUCTS = """
query Products($first: Int!, $after: String) {
  products(first: $first, after: $after) {
    pageInfo { hasNextPage endCursor }
    nodes { PRODUCT_FIELDS }
  }
}
""".replace("PRODUCT_FIELDS", PRODUCT_FIELDS)
