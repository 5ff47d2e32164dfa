"""The one workload every benchmark sends: a typical ``track`` call.

Ten properties of every common kind (strings, an int, floats, a bool, a list,
a nested dict, a timezone-aware datetime) and a context like a web service
sends (ip, userAgent, locale, page). Values that differ per event in real
traffic (user id, order id, revenue, products, time) differ here too, so a
client that keeps the caller's strings pays for them, as it would in
production. Each call gets its own dicts: the reference client writes
``context.library`` into the caller's context dict.
"""

from __future__ import annotations

import json
import random
from datetime import date, datetime, timedelta, timezone
from typing import Any

__all__ = ["WRITE_KEY", "json_size", "make_call", "make_calls"]

WRITE_KEY = "benchmark-write-key"

_PLACED = datetime(2026, 11, 23, 13, 8, 42, 123000, tzinfo=timezone.utc)
_USER_AGENT = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
_CATEGORIES = ("books", "music", "games", "garden", "kitchen")
_CITIES = (("Berlin", "DE"), ("Lyon", "FR"), ("Austin", "US"), ("Osaka", "JP"))


def make_call(index: int, rng: random.Random) -> dict[str, Any]:
    """Keyword arguments of one ``track`` call (the same for every client)."""
    city, country = _CITIES[index % len(_CITIES)]
    return {
        "user_id": f"user-{rng.randrange(1_000_000):06d}",
        "event": "Order Completed",
        "properties": {
            "order_id": f"ord-{index:08d}-{rng.getrandbits(32):08x}",
            "revenue": round(rng.uniform(5.0, 500.0), 2),
            "currency": "USD",
            "quantity": rng.randint(1, 5),
            "coupon_applied": rng.random() < 0.3,
            "products": [f"sku-{rng.randrange(100_000):05d}" for _ in range(3)],
            "category": _CATEGORIES[index % len(_CATEGORIES)],
            "shipping": {"method": "express", "cost": 4.99, "address": {"city": city, "country": country}},
            "placed_at": _PLACED + timedelta(milliseconds=index),
            "referrer": "https://www.example.com/landing?utm_source=newsletter",
        },
        "context": {
            "ip": f"203.0.113.{index % 250 + 1}",
            "userAgent": _USER_AGENT,
            "locale": "en-US",
            "page": {"path": "/checkout/complete", "url": "https://shop.example.com/checkout/complete"},
        },
    }


def make_calls(count: int, seed: int = 1, start: int = 0) -> list[dict[str, Any]]:
    """``count`` calls, the same for a given seed (so every client gets identical input)."""
    rng = random.Random(seed)
    return [make_call(start + index, rng) for index in range(count)]


def _iso(value: object) -> str:
    # The reference keeps datetimes in the message it returns; it serialises them with isoformat().
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"not JSON: {type(value).__name__}")


def json_size(message: dict[str, Any]) -> int:
    """``len(json.dumps(message))``: the size a call's returned message is compared with."""
    return len(json.dumps(message, default=_iso))
