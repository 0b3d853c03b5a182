"""How the dashboard writes money and billing periods: one format each, on every billing page.

Totals, lines and monthly prices are in cents; unit prices (per 1,000 tokens, per GPU
second) keep the digits that make them non-zero, up to the ledger's six, and no
trailing zeros beyond the cents: "$0.02", "$0.015", "$0.0006".
"""

from __future__ import annotations

from datetime import date
from decimal import ROUND_HALF_UP, Decimal

from django.utils.formats import date_format
from django.utils.translation import pgettext

CENTS = Decimal("0.01")
#: The ledger's precision of unit prices (billing.models.UNIT_PRICE).
UNIT_PRICE_PLACES = 6


def money(amount: Decimal | int | str) -> str:
    """``Decimal("1234.5")`` -> "$1,234.50"; a negative amount (a refund) -> "-$1.00"."""
    value = Decimal(amount).quantize(CENTS, rounding=ROUND_HALF_UP)
    sign = "-" if value < 0 else ""
    return f"{sign}${abs(value):,.2f}"


def unit_price(price: Decimal | int | str) -> str:
    """``Decimal("0.020000")`` -> "$0.02", ``Decimal("0.000600")`` -> "$0.0006": cents at least, six places at most."""
    value = Decimal(price).quantize(Decimal(1).scaleb(-UNIT_PRICE_PLACES), rounding=ROUND_HALF_UP)
    text = f"{abs(value):,.{UNIT_PRICE_PLACES}f}"
    whole, fraction = text.split(".")
    fraction = fraction.rstrip("0").ljust(2, "0")
    return f"{'-' if value < 0 else ''}${whole}.{fraction}"


def period(first_day: date, last_day: date) -> str:
    """Inclusive days with the year once: "1-30 Nov 2026", "15 Nov - 14 Dec 2026", with an en dash, not a hyphen.

    The date formats (Django's format characters) and the joiners are translatable, so that zh-Hans
    reads "2026年11月1日-30日" (again an en dash) rather than an English month.
    """
    if first_day == last_day:
        return date_format(first_day, pgettext("billing period of one day", "j M Y"))
    if (first_day.year, first_day.month) == (last_day.year, last_day.month):
        start = date_format(first_day, pgettext("first day of a billing period within one month", "j"))
        end = date_format(last_day, pgettext("last day of a billing period within one month", "j M Y"))
        return pgettext("billing period within one month", "%(start)s–%(end)s") % {"start": start, "end": end}  # noqa: RUF001
    if first_day.year == last_day.year:
        start = date_format(first_day, pgettext("first day of a billing period within one year", "j M"))
        end = date_format(last_day, pgettext("last day of a billing period within one year", "j M Y"))
    else:
        start = date_format(first_day, pgettext("first day of a billing period across years", "j M Y"))
        end = date_format(last_day, pgettext("last day of a billing period across years", "j M Y"))
    return pgettext("billing period across months", "%(start)s – %(end)s") % {"start": start, "end": end}  # noqa: RUF001
