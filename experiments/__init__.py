"""Copy experiments: arms of approved variants (or a marketer's control text), sticky assignment of units,
outcomes from tracking links, pixels and ingested events, Bayesian results and adaptive traffic.

Sits between ``recommendations`` (whose event ingest and campaigns feed and use it) and ``generation``
(whose approved variants are the arms).
"""
