"""Assignment, the hot path: websites and email senders call it once per visitor or recipient.

Per call: the experiment row (the tenant-scoped lookup of the API), its arms and weights from the cache,
and one INSERT ... ON CONFLICT DO NOTHING for the exposure. A unit's arm is a pure function of its
hash and the weights at its first call, and the unique (experiment, unit) constraint keeps it: concurrent
first calls for one unit race on the insert, one wins, the others read the winner's row.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.core.cache import cache
from django.db import connection, transaction
from django.utils import timezone

from core.errors import InvalidInput
from experiments.models import Arm, Assignment, Experiment, Policy
from experiments.tracking import host_allowed, host_of

#: A cached allocation lives this long at most; any save of the experiment (start, stop, reweighting,
#: arm edits) changes ``updated_at`` and with it the key, so this only bounds stale memory.
ALLOCATION_TTL_S = 3600


@dataclass(frozen=True)
class ServedArm:
    id: str
    label: str
    text: str
    weight: float


@dataclass(frozen=True)
class Served:
    arm: ServedArm
    assignment_id: uuid.UUID | None
    created: bool
    assigned_at: datetime | None


def _allocation_key(experiment: Experiment) -> str:
    return f"experiments:allocation:{experiment.pk}:{experiment.updated_at.timestamp():.6f}"


#: This process's copies of allocations, by the same versioned key: safe to keep (a changed experiment
#: has a new key), and a dictionary read instead of a Redis round trip on every call. Bounded by
#: clearing: a process serving more running experiments than this refills it from Redis.
_LOCAL: dict[str, list[ServedArm]] = {}
LOCAL_ALLOCATIONS = 1000


def allocation(experiment: Experiment) -> list[ServedArm]:
    """The experiment's arms with their current shares of new units, cached per version of the experiment."""
    key = _allocation_key(experiment)
    local = _LOCAL.get(key)
    if local is not None:
        return local
    if len(_LOCAL) >= LOCAL_ALLOCATIONS:
        _LOCAL.clear()
    cached = cache.get(key)
    if cached is not None:
        _LOCAL[key] = [ServedArm(*row) for row in cached]
        return _LOCAL[key]
    arms = list(Arm.objects.filter(experiment=experiment).order_by("position", "label"))
    if experiment.policy == Policy.FIXED or not any(arm.weight > 0 for arm in arms):
        weights = [1.0 / len(arms)] * len(arms) if arms else []
    else:
        total = sum(arm.weight for arm in arms)
        weights = [arm.weight / total for arm in arms]
    served = [ServedArm(str(arm.pk), arm.label, arm.text, w) for arm, w in zip(arms, weights, strict=True)]
    cache.set(key, [(s.id, s.label, s.text, s.weight) for s in served], ALLOCATION_TTL_S)
    _LOCAL[key] = served
    return served


def unit_point(experiment_id: Any, unit: str) -> float:
    """Where the unit falls in [0, 1): uniform over units, the same on every call and every server."""
    digest = hashlib.blake2b(f"{experiment_id}:{unit}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def pick(arms: list[ServedArm], point: float) -> ServedArm:
    """The arm whose slice of [0, 1), by cumulative weight, holds ``point``."""
    cumulative = 0.0
    for arm in arms:
        cumulative += arm.weight
        if point < cumulative:
            return arm
    return arms[-1]  # rounding: the weights may sum to 0.9999999


_INSERT = """
INSERT INTO {table} (id, experiment_id, arm_id, unit, created_at) VALUES (%s, %s, %s, %s, %s)
ON CONFLICT (experiment_id, unit) DO NOTHING
RETURNING id
"""
# The same insert committed without waiting for its WAL flush (``synchronous_commit`` off for this
# statement's own transaction only, set in the statement so it stays one round trip). The flush wait
# was half of a new unit's latency (25 ms against 15 for a known unit, on this machine's shared disk).
# What a database crash can lose is the last fraction of a second of exposures, never a consistent
# state: such a unit is assigned again on its next call, to the same arm under a fixed split (the arm
# is a function of the unit's hash) and by the weights of that moment under an adaptive one.
_INSERT_ASYNC_COMMIT = """
INSERT INTO {table} (id, experiment_id, arm_id, unit, created_at)
SELECT %s, %s, %s, %s, %s FROM (SELECT set_config('synchronous_commit', 'off', true)) AS async_commit
ON CONFLICT (experiment_id, unit) DO NOTHING
RETURNING id
"""
_EXISTING = "SELECT id, arm_id, created_at FROM {table} WHERE experiment_id = %s AND unit = %s"


def assign(experiment: Experiment, unit: str) -> Served:
    """The unit's arm, recorded as an exposure on the first call; the caller checked the experiment runs."""
    arms = allocation(experiment)
    by_id = {arm.id: arm for arm in arms}
    table = Assignment._meta.db_table
    chosen = pick(arms, unit_point(experiment.pk, unit))
    now = timezone.now()
    with connection.cursor() as cursor:
        # Inside a caller's transaction the setting would outlive this insert (it lasts to that commit).
        statement = _INSERT if connection.in_atomic_block else _INSERT_ASYNC_COMMIT
        cursor.execute(statement.format(table=table), [uuid.uuid4(), experiment.pk, uuid.UUID(chosen.id), unit, now])
        row = cursor.fetchone()
        if row is not None:
            return Served(chosen, row[0], True, now)
        # Another call assigned the unit first (now or earlier): its arm is the unit's arm. A separate
        # statement, so it sees a row committed by a concurrent call that the insert waited for.
        cursor.execute(_EXISTING.format(table=table), [experiment.pk, unit])
        existing = cursor.fetchone()
    if existing is None:  # pragma: no cover (the conflicting row cannot vanish: assignments are never deleted)
        raise RuntimeError("assignment conflict without a row")
    arm = by_id.get(str(existing[1])) or chosen
    return Served(arm, existing[0], False, existing[2])


_INSERT_MANY = """
INSERT INTO {table} (id, experiment_id, arm_id, unit, created_at)
SELECT rows.id, %s, rows.arm_id, rows.unit, %s
FROM unnest(%s::uuid[], %s::uuid[], %s::text[]) WITH ORDINALITY AS rows (id, arm_id, unit, n)
ORDER BY rows.n
ON CONFLICT (experiment_id, unit) DO NOTHING
RETURNING id, unit
"""
_EXISTING_MANY = "SELECT unit, id, arm_id, created_at FROM {table} WHERE experiment_id = %s AND unit = ANY(%s)"


def assign_many(experiment: Experiment, units: list[str]) -> dict[str, Served]:
    """Each unit's arm (by unit), as ``assign`` would answer it one call at a time; one transaction.

    The arm of a new unit is the same pure function as in ``assign`` (``pick`` over ``allocation`` at the
    unit's ``unit_point``), and the same unique constraint keeps it: a unit assigned before, by either
    path, gets its stored arm and assignment id back. Two statements for the whole list instead of one
    per unit (the list of a 1,000-recipient mailing is one round trip, not a thousand).

    Units are inserted in sorted order: two concurrent lists that share units then take their row
    locks in the same order and one waits for the other, where opposite orders could deadlock.
    """
    arms = allocation(experiment)
    by_id = {arm.id: arm for arm in arms}
    ordered = sorted(set(units))
    chosen = {unit: pick(arms, unit_point(experiment.pk, unit)) for unit in ordered}
    table = Assignment._meta.db_table
    now = timezone.now()
    served: dict[str, Served] = {}
    own_transaction = not connection.in_atomic_block
    with transaction.atomic(), connection.cursor() as cursor:
        # Only in a transaction of its own (a caller's would carry the setting to its commit): the
        # same trade as ``assign``'s single insert, see _INSERT_ASYNC_COMMIT.
        if own_transaction:
            cursor.execute("SET LOCAL synchronous_commit = off")
        cursor.execute(
            _INSERT_MANY.format(table=table),
            [experiment.pk, now, [uuid.uuid4() for _ in ordered], [uuid.UUID(chosen[u].id) for u in ordered], ordered],
        )
        for assignment_id, unit in cursor.fetchall():
            served[unit] = Served(chosen[unit], assignment_id, True, now)
        known = [unit for unit in ordered if unit not in served]
        if known:
            # A separate statement: it sees rows of concurrent calls that the insert waited for.
            cursor.execute(_EXISTING_MANY.format(table=table), [experiment.pk, known])
            for unit, assignment_id, arm_id, created_at in cursor.fetchall():
                served[unit] = Served(by_id.get(str(arm_id)) or chosen[unit], assignment_id, False, created_at)
    if len(served) != len(ordered):  # pragma: no cover (assignments are never deleted)
        raise RuntimeError("assignment conflict without a row")
    return served


def winner_of(experiment: Experiment) -> ServedArm | None:
    """A concluded experiment serves its winner to everyone, recording nothing."""
    if experiment.winner_id is None:
        return None
    return next((arm for arm in allocation(experiment) if arm.id == str(experiment.winner_id)), None)


def allowed_hosts(experiment: Experiment) -> set[str]:
    hosts = {host_of(experiment.target_url)} if experiment.target_url else set()
    return hosts | {str(h).lower() for h in experiment.allowed_hosts or []}


def click_target(experiment: Experiment, target: str) -> str:
    """Where a tracking link leads: the asked target when its host is allowed, else the experiment's target URL."""
    if not target:
        return experiment.target_url
    if not host_allowed(target, allowed_hosts(experiment)):
        raise InvalidInput(
            "target: its host is not the experiment's target URL's or one of its allowed hosts.",
            code="target_not_allowed",
            fields={"target": ["host not allowed"]},
        )
    return target
