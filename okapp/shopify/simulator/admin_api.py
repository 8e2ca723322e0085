"""What the simulator answers on the Admin GraphQL endpoint, and the REST shapes of its webhooks.

It does not parse GraphQL: it recognises the operations okapp sends by name and answers with the
Admin API's field names and shapes, cursor pagination, `extensions.cost` and THROTTLED when the
bucket is empty.
"""

from __future__ import annotations

import base64
import re
from datetime import datetime

from okapp.shopify.simulator.store import (
    SimShop,
    financial_status,
    fulfillment_status,
    iso,
    refunded_quantities,
)

OPERATION = re.compile(r"^\s*(?:query|mutation)\s+(\w+)")
SEARCH_TERM = re.compile(r"(\w+):(>=|<=|>|<)?'?([^'\s]+)'?")
MAX_PAGE = 250


class GraphQLProblem(Exception):
    pass


def gid(kind: str, value: int) -> str:
    return f"gid://shopify/{kind}/{value}"


def gid_number(value: str) -> int:
    return int(str(value).rsplit("/", 1)[-1])


def money(amount) -> dict:
    return {"shopMoney": {"amount": str(amount), "currencyCode": "USD"}}


# --- costs ------------------------------------------------------------------------------------

def requested_cost(operation: str, variables: dict) -> int:
    first = min(int(variables.get("first") or 0), MAX_PAGE)
    return {"Orders": 2 + first * 6, "Products": 2 + first * 2, "Order": 8}.get(operation, 1)


def actual_cost(operation: str, data: dict) -> int:
    if operation == "Orders":
        return 2 + len(data["orders"]["nodes"]) * 4
    if operation == "Products":
        return 2 + len(data["products"]["nodes"]) * 2
    return {"Order": 6}.get(operation, 1)


# --- nodes ------------------------------------------------------------------------------------

def order_node(shop: SimShop, order: dict) -> dict:
    customer = order["customer"]
    refunded = refunded_quantities(order)
    total = sum(float(i["price"]) * (i["quantity"] - refunded.get(i["id"], 0))
                for i in order["line_items"])
    return {
        "id": gid("Order", order["id"]), "name": order["name"],
        "createdAt": iso(order["created_at"]), "processedAt": iso(order["created_at"]),
        "updatedAt": iso(order["updated_at"]), "cancelledAt": iso(order["cancelled_at"]),
        "test": order["test"], "displayFinancialStatus": financial_status(order),
        "displayFulfillmentStatus": fulfillment_status(order), "email": order["email"],
        "currencyCode": order["currency"], "totalPriceSet": money(f"{total:.2f}"),
        "customerLocale": order["locale"],
        "customer": None if customer is None else {
            "id": gid("Customer", customer["id"]), "firstName": customer["first_name"],
            "lastName": customer["last_name"],
            "defaultEmailAddress": {"emailAddress": customer["email"]}},
        "shippingAddress": None if order["country"] is None else {
            "countryCodeV2": order["country"]},
        "lineItems": {"nodes": [{
            "id": gid("LineItem", item["id"]), "quantity": item["quantity"],
            "title": item["title"], "variantTitle": item["variant_title"] or None,
            "requiresShipping": item["requires_shipping"], "isGiftCard": item["gift_card"],
            "originalUnitPriceSet": money(item["price"]),
            "product": (product_node(shop.product(item["product_id"]))
                        if shop.product(item["product_id"]) else None),
            "variant": {"id": gid("ProductVariant", item["variant_id"]),
                        "image": {"url": item["image_url"]}},
            "image": {"url": item["image_url"]},
        } for item in order["line_items"]]},
        "fulfillments": [{
            "id": gid("Fulfillment", parcel["id"]),
            "status": parcel["status"].upper(),
            "displayStatus": display_status(parcel),
            "createdAt": iso(parcel["created_at"]), "updatedAt": iso(parcel["updated_at"]),
            "deliveredAt": iso(parcel["delivered_at"]),
            "fulfillmentLineItems": {"nodes": [
                {"quantity": qty, "lineItem": {"id": gid("LineItem", item_id)}}
                for item_id, qty in parcel["line_items"].items()]},
        } for parcel in order["fulfillments"]],
        "refunds": [{
            "id": gid("Refund", refund["id"]), "createdAt": iso(refund["created_at"]),
            "refundLineItems": {"nodes": [
                {"quantity": qty, "lineItem": {"id": gid("LineItem", item_id)}}
                for item_id, qty in refund["line_items"].items()]},
        } for refund in order["refunds"]],
    }


def display_status(parcel: dict) -> str:
    if parcel["status"] == "cancelled":
        return "CANCELED"
    if parcel["shipment_status"]:
        return parcel["shipment_status"].upper()
    return "FULFILLED"


def product_node(product: dict) -> dict:
    return {
        "id": gid("Product", product["id"]), "title": product["title"],
        "handle": product["handle"], "status": product["status"],
        "productType": product["product_type"], "tags": product["tags"],
        "updatedAt": iso(product["updated_at"]),
        "featuredMedia": {"preview": {"image": {"url": product["image_url"]}}},
        "priceRangeV2": {"maxVariantPrice": {"amount": product["price"],
                                             "currencyCode": "USD"}},
    }


# --- search and pages -------------------------------------------------------------------------

def _matches(order: dict, terms: list[tuple[str, str, datetime]]) -> bool:
    for field, op, value in terms:
        have = order["created_at"] if field in ("created_at", "processed_at") else order[
            "updated_at"]
        if not {">=": have >= value, "<=": have <= value, ">": have > value,
                "<": have < value, "": have == value}[op]:
            return False
    return True


def parse_search(query: str | None) -> list[tuple[str, str, datetime]]:
    terms = []
    for field, op, value in SEARCH_TERM.findall(query or ""):
        if field in ("created_at", "updated_at", "processed_at"):
            terms.append((field, op or "", datetime.fromisoformat(value.replace("Z", "+00:00"))))
    return terms


def search_orders(shop: SimShop, query: str | None, sort_key: str | None) -> list[dict]:
    terms = parse_search(query)
    found = [o for o in shop.orders.values() if _matches(o, terms)]
    key = {"UPDATED_AT": "updated_at", "CREATED_AT": "created_at",
           "PROCESSED_AT": "created_at"}.get(sort_key or "", None)
    return sorted(found, key=(lambda o: (o[key], o["id"])) if key else (lambda o: o["id"]))


def page(items: list, variables: dict, render) -> dict:
    first = int(variables.get("first") or 0)
    if not 0 < first <= MAX_PAGE:
        raise GraphQLProblem(f"The first argument must be between 1 and {MAX_PAGE}.")
    start = 0
    if variables.get("after"):
        try:
            start = int(base64.b64decode(variables["after"]).decode().split(":")[1])
        except (ValueError, IndexError):
            raise GraphQLProblem("Invalid cursor for current pagination sort.") from None
    chunk = items[start:start + first]
    end = start + len(chunk)
    return {"pageInfo": {"hasNextPage": end < len(items),
                         "endCursor": base64.b64encode(f"offset:{end}".encode()).decode()
                         if chunk else None},
            "nodes": [render(item) for item in chunk]}


def answer(shop: SimShop, operation: str, variables: dict) -> dict:
    """The `data` of an operation okapp sends."""
    if operation == "ShopDetails":
        return {"shop": {
            "name": shop.name, "email": shop.email, "contactEmail": shop.email,
            "ianaTimezone": shop.timezone, "currencyCode": shop.currency,
            "myshopifyDomain": shop.domain, "billingAddress": {"countryCodeV2": shop.country},
            "primaryDomain": {"host": shop.domain, "url": f"https://{shop.domain}"}},
            "app": {"id": "gid://shopify/AppInstallation/1"}}
    if operation == "ShopLocale":
        return {"shopLocales": [{"locale": shop.locale, "primary": True}]}
    if operation == "Orders":
        found = search_orders(shop, variables.get("query"), variables.get("sortKey"))
        return {"orders": page(found, variables, lambda o: order_node(shop, o))}
    if operation == "OrdersCount":
        count = len(search_orders(shop, variables.get("query"), None))
        return {"ordersCount": {"count": count, "precision": "EXACT"}}
    if operation == "Order":
        try:
            order = shop.orders.get(gid_number(variables.get("id", "")))
        except ValueError:
            order = None
        return {"order": order_node(shop, order) if order else None}
    if operation == "Products":
        return {"products": page(shop.products, variables, product_node)}
    raise GraphQLProblem(f"Field '{operation}' doesn't exist on type 'QueryRoot'")


# --- REST webhook payloads --------------------------------------------------------------------

def _rest_line_item(item: dict, quantity: int | None = None) -> dict:
    return {"id": item["id"], "admin_graphql_api_id": gid("LineItem", item["id"]),
            "product_id": item["product_id"], "variant_id": item["variant_id"],
            "title": item["title"], "variant_title": item["variant_title"],
            "name": item["title"], "quantity": item["quantity"] if quantity is None else quantity,
            "price": item["price"], "requires_shipping": item["requires_shipping"],
            "gift_card": item["gift_card"]}


def fulfillment_payload(order: dict, parcel: dict) -> dict:
    items = {item["id"]: item for item in order["line_items"]}
    return {
        "id": parcel["id"], "admin_graphql_api_id": gid("Fulfillment", parcel["id"]),
        "order_id": order["id"], "status": parcel["status"], "name": parcel["name"],
        "created_at": iso(parcel["created_at"]), "updated_at": iso(parcel["updated_at"]),
        "service": "manual", "shipment_status": parcel["shipment_status"],
        "tracking_company": "UPS", "tracking_number": parcel["tracking_number"],
        "tracking_numbers": [parcel["tracking_number"]], "email": order["email"],
        "destination": None if order["country"] is None else {
            "country_code": order["country"],
            "first_name": (order["customer"] or {}).get("first_name"),
            "last_name": (order["customer"] or {}).get("last_name")},
        "line_items": [_rest_line_item(items[item_id], qty)
                       for item_id, qty in parcel["line_items"].items()],
    }


def fulfillment_event_payload(order: dict, parcel: dict, event_id: int) -> dict:
    at = iso(parcel["delivered_at"])
    return {"id": event_id, "fulfillment_id": parcel["id"], "order_id": order["id"],
            "status": "delivered", "message": "Delivered", "happened_at": at,
            "created_at": at, "updated_at": at,
            "admin_graphql_api_id": gid("FulfillmentEvent", event_id)}


def order_payload(order: dict) -> dict:
    customer = order["customer"]
    return {
        "id": order["id"], "admin_graphql_api_id": gid("Order", order["id"]),
        "name": order["name"], "email": order["email"], "created_at": iso(order["created_at"]),
        "updated_at": iso(order["updated_at"]), "cancelled_at": iso(order["cancelled_at"]),
        "financial_status": financial_status(order).lower(),
        "fulfillment_status": {"FULFILLED": "fulfilled", "PARTIALLY_FULFILLED": "partial"}.get(
            fulfillment_status(order)),
        "customer": None if customer is None else {
            "id": customer["id"], "email": customer["email"],
            "first_name": customer["first_name"], "last_name": customer["last_name"]},
        "line_items": [_rest_line_item(item) for item in order["line_items"]],
    }


def refund_payload(order: dict, refund: dict) -> dict:
    return {"id": refund["id"], "order_id": order["id"], "created_at": iso(refund["created_at"]),
            "refund_line_items": [{"line_item_id": item_id, "quantity": qty}
                                  for item_id, qty in refund["line_items"].items()]}
