"""Billing: plans, metering, quotas, invoices and the Stripe adapter.

Owns plans and subscriptions (``plans``, ``subscriptions``), admission against the plan
(``admission``), the ledger of holds and charges by reference (``ledger``; ``services`` re-exports
these for callers), period invoices (``invoicing``) and Stripe (``payments``, the top of the app:
the modules below reach it only through the hooks it registers in ``apps``). Billing meters
references, not domain objects: it never imports generation or recommendations. It may import the
platform apps and core; it and ``workers`` are independent (it reaches its tasks by name,
``dispatch``).
"""
