"""The limits of what an experiment may ask, each stated once (services enforce them, serializers and forms
declare them)."""

from __future__ import annotations

MAX_NAME_LENGTH = 120
#: A goal or outcome event name: ``click``, ``open``, ``cart``, ``purchase`` or a custom name.
MAX_EVENT_NAME_LENGTH = 64
MAX_LABEL_LENGTH = 40
MAX_ARM_TEXT_LENGTH = 10_000
#: Arms of one experiment: every arm splits the traffic further, so each needs more exposures to decide.
MIN_ARMS, MAX_ARMS = 2, 10
#: A unit is a customer's external id or a visitor id (as long as recommendations' external ids allow).
MAX_UNIT_LENGTH = 200
#: Units in one bulk assignment (``POST .../assignments``): a mailing's recipients, sent in pages. Measured
#: on this machine (2 cores, load average 10): 1,000 new units are two statements, ~30 ms of web CPU and
#: ~0.5 s of wall time; their tracking links cost ~0.22 ms of CPU each (a signed, compressed token),
#: ~0.45 s for a pixel and a click link per unit, which ``links: false`` skips.
MAX_BULK_UNITS = 1000
MAX_EVENT_ID_LENGTH = 200
MAX_URL_LENGTH = 2000
MAX_ALLOWED_HOSTS = 20
#: Attribution windows from an hour to 90 days (longer windows credit copy for purchases it did not cause).
MIN_ATTRIBUTION_HOURS, MAX_ATTRIBUTION_HOURS = 1, 90 * 24
#: An adaptive arm's floor: at most an even share (then the policy is a fixed split).
MAX_MIN_SHARE = 0.5
#: The probability to be best that stops an experiment: below 0.8 a decision is close to a coin flip.
MIN_STOP_PROBABILITY, MAX_STOP_PROBABILITY = 0.8, 0.999
MAX_EXPOSURES = 100_000_000
