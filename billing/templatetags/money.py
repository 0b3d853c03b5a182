"""``{% load money %}``: ``{{ amount|money }}``, ``{{ plan.price_per_1k_tokens|unit_price }}`` (billing.formatting)."""

from __future__ import annotations

from django import template

from billing import formatting

register = template.Library()

register.filter("money", formatting.money)
register.filter("unit_price", formatting.unit_price)
