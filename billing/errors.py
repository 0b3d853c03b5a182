"""Why a job was refused admission, as domain errors the edges map to HTTP."""

from __future__ import annotations

from core.errors import DomainError, InvalidInput


class QuotaExceeded(DomainError):
    """A hard-capped plan has not enough tokens left for the job (402 Payment Required)."""

    status_code = 402
    code = "quota_exceeded"


class SubscriptionSuspended(DomainError):
    """The organization's subscription is suspended: no new jobs until it is settled."""

    status_code = 402
    code = "subscription_suspended"


class ConcurrencyLimitExceeded(DomainError):
    """The plan's concurrent jobs are all running; retry when one finishes (429)."""

    status_code = 429
    code = "concurrency_limit"
    # A slot frees when a running job ends; short jobs take seconds.
    retry_after = 10


class VariantLimitExceeded(InvalidInput):
    status_code = 400
    code = "variant_limit"


class ExperimentLimitExceeded(DomainError):
    """The plan's running experiments are all running: stop or conclude one, or upgrade (402)."""

    status_code = 402
    code = "experiment_limit"
