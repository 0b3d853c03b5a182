"""Any sequence of reserve / settle / release calls, repeated or out of order, keeps the ledger whole."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import pytest
from django.db import transaction
from django.db.models import Sum
from hypothesis import given, settings
from hypothesis import strategies as st

from billing.errors import ConcurrencyLimitExceeded, QuotaExceeded
from billing.models import BillingAccount, LedgerEntry, LedgerKind
from billing.services import ensure_billing_account
from generation.metering import (
    PROMPT_TOKEN_ALLOWANCE_PER_VARIANT,
    max_tokens_for,
    release_job,
    reserve_for_job,
    settle_job,
)
from tests.support.billing import make_jobs, make_plan, seed_plans, set_usage, subscribe
from tests.support.factories import ProjectFactory

pytestmark = pytest.mark.django_db

PRICE_PER_1K = Decimal("0.02")  # 0.00002 a token: exact at the ledger's six decimal places
JOB_SHAPES = [(1, 10), (2, 60), (1, 200), (2, 200)]  # (num_variants, max_new_tokens)

operations = st.lists(
    st.tuples(
        st.sampled_from(["reserve", "settle", "release"]),
        st.integers(0, len(JOB_SHAPES) - 1),
        st.integers(0, 100),  # share of the prompt allowance used
        st.integers(0, 100),  # share of the completion budget used
    ),
    min_size=3,
    max_size=16,
)


@dataclass
class Expected:
    reserved: bool = False
    released: bool = False
    charged: bool = False
    usage: int = 0
    unadmitted_charge: bool = False  # settled without a reservation: charged, never held


@settings(max_examples=40, derandomize=True, deadline=None)
@given(overage_allowed=st.booleans(), included=st.sampled_from([300, 1_200]), ops=operations)
def test_ledger_matches_the_jobs_whatever_the_call_order(overage_allowed, included, ops):
    # Each example in its own rolled-back savepoint: examples share the test's transaction.
    with transaction.atomic():
        check_sequence(overage_allowed, included, ops)
        transaction.set_rollback(True)


def check_sequence(overage_allowed: bool, included: int, ops: list[tuple[str, int, int, int]]) -> None:
    # given a fresh organization on a small plan with three concurrent slots
    seed_plans()
    project = ProjectFactory()
    org = project.organization
    plan = make_plan(
        f"prop-{project.pk.hex[:20]}",
        included_tokens=included,
        overage_allowed=overage_allowed,
        price_per_1k_tokens=PRICE_PER_1K,
        max_concurrent_jobs=3,
    )
    subscribe(org, plan)
    ensure_billing_account(org)
    jobs = [
        make_jobs(project, 1, num_variants=variants, max_new_tokens=new_tokens)[0]
        for variants, new_tokens in JOB_SHAPES
    ]
    expected = [Expected() for _ in jobs]

    for op, index, prompt_share, completion_share in ops:
        job, state = jobs[index], expected[index]
        if op == "reserve":
            try:
                reserve_for_job(job=job)
                state.reserved = True
            except (QuotaExceeded, ConcurrencyLimitExceeded):
                assert not state.reserved  # an admitted job is never refused on a retry
        elif op == "settle":
            if not (state.charged or state.released):
                prompt = job.num_variants * PROMPT_TOKEN_ALLOWANCE_PER_VARIANT * prompt_share // 100
                completion = job.num_variants * job.max_new_tokens * completion_share // 100
                set_usage(job, prompt=prompt, completion=completion)
                state.charged, state.usage, state.released = True, prompt + completion, state.reserved
                state.unadmitted_charge = not state.reserved
            settle_job(job=job)
        else:
            release_job(job=job, reason="failed")
            state.released = state.released or state.reserved

        # then, after every call
        account = BillingAccount.objects.get(organization=org)
        open_holds = [max_tokens_for(j) for j, s in zip(jobs, expected, strict=True) if s.reserved and not s.released]
        used = sum(s.usage for s in expected if s.charged)
        ledger = LedgerEntry.objects.filter(organization=org)
        charges = ledger.filter(kind=LedgerKind.CHARGE).aggregate(tokens=Sum("tokens"), amount=Sum("amount"))
        holds = ledger.filter(kind__in=[LedgerKind.RESERVATION, LedgerKind.RELEASE]).aggregate(tokens=Sum("tokens"))

        assert (charges["tokens"] or 0) == used == account.tokens_used_in_period
        overage = max(used - included, 0) if overage_allowed else 0
        assert (charges["amount"] or Decimal("0")) == Decimal(overage) * PRICE_PER_1K / 1000
        assert account.tokens_reserved == sum(open_holds) == (holds["tokens"] or 0)
        assert account.active_jobs == len(open_holds)
        assert min(account.tokens_reserved, account.tokens_used_in_period, account.active_jobs) >= 0
        if not overage_allowed and not any(s.unadmitted_charge for s in expected):
            # a hard cap holds for admitted jobs (actual usage <= the hold)
            assert account.tokens_used_in_period + account.tokens_reserved <= included
