"""Webhooks: each job's final state is POSTed to the organization's URLs, signed and retried.

Signature header ``X-Loom-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>``
(the Stripe scheme: the timestamp in the signed text defeats replays). Failed
deliveries are retried with exponential backoff; every attempt is logged on
the delivery row.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from typing import Any

import requests
from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from audit.services import record
from core.errors import InvalidInput
from generation import dispatch
from generation.models import GenerationJob, Webhook, WebhookDelivery

MAX_ATTEMPTS = 8
TIMEOUT_S = 10
SIGNATURE_HEADER = "X-Loom-Signature"


def _fernet() -> Fernet:
    key = hashlib.sha256(b"loom-webhook-secrets:" + settings.SECRET_KEY.encode()).digest()
    return Fernet(base64.urlsafe_b64encode(key))


def encrypt_secret(secret: str) -> str:
    return _fernet().encrypt(secret.encode()).decode()


def decrypt_secret(token: str) -> str:
    try:
        return _fernet().decrypt(token.encode()).decode()
    except InvalidToken as exc:  # SECRET_KEY changed: the webhook must be re-created
        raise RuntimeError("webhook secret cannot be decrypted (was SECRET_KEY rotated?)") from exc


def sign(secret: str, body: bytes, timestamp: int) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify(secret: str, body: bytes, header: str, tolerance_s: int = 300) -> bool:
    """What a receiver does; used by our tests and documented for customers."""
    try:
        parts = dict(p.split("=", 1) for p in header.split(","))
        timestamp = int(parts["t"])
    except (ValueError, KeyError):
        return False
    if abs(time.time() - timestamp) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, body, timestamp), header)


@transaction.atomic
def create_webhook(*, actor: Any, organization: Any, url: str) -> tuple[Webhook, str]:
    """Returns the webhook and its signing secret, shown once."""
    if not url.startswith(("https://", "http://")):
        raise InvalidInput(
            "The webhook URL must start with https:// or http://.",
            code="invalid_url",
            fields={"url": ["must start with https:// or http://"]},
        )
    secret = "whsec_" + secrets.token_urlsafe(32)
    webhook = Webhook.objects.create(
        organization=organization,
        url=url,
        encrypted_secret=encrypt_secret(secret),
        created_by=actor if getattr(actor, "pk", None) else None,
    )
    record("webhook.created", organization=organization, actor=actor, target=webhook, url=url)
    return webhook, secret


def job_payload(job: GenerationJob) -> dict[str, Any]:
    return {
        "event": f"job.{job.status}",
        "job": {
            "id": str(job.pk),
            "project": str(job.project_id),
            "status": job.status,
            "failure_reason": job.failure_reason,
            "template_version": str(job.template_version_id),
            "prompt_tokens": job.prompt_tokens,
            "completion_tokens": job.completion_tokens,
            "finished_at": job.finished_at.isoformat() if job.finished_at else None,
            "variants": [
                {
                    "id": str(v.pk),
                    "index": v.index,
                    "text": v.text,
                    "finish_reason": v.finish_reason,
                    "constraints_passed": v.constraints_passed,
                    "brand_fit": v.brand_fit,
                }
                for v in job.variants.filter(is_current=True).order_by("index")
            ],
        },
    }


def schedule_job_webhooks(job_id: Any) -> list[WebhookDelivery]:
    """One delivery per active webhook for the job's final state; idempotent."""
    # Webhooks first: most organizations have none, and then the job and its variants need not be read.
    webhooks = list(
        Webhook.objects.filter(
            organization_id__in=GenerationJob.objects.filter(pk=job_id).values("organization_id"), is_active=True
        )
    )
    if not webhooks:
        return []
    job = GenerationJob.objects.get(pk=job_id)
    payload = job_payload(job)
    created = []
    for webhook in webhooks:
        delivery, is_new = WebhookDelivery.objects.get_or_create(
            webhook=webhook, job=job, event=payload["event"], defaults={"payload": payload}
        )
        if is_new:
            created.append(delivery)
            transaction.on_commit(lambda d=delivery: dispatch.deliver_webhook(d.pk))
    return created


def backoff_seconds(attempts: int) -> int:
    return min(5 * 2 ** (attempts - 1), 3600)


def deliver(delivery_id: Any) -> int | None:
    """Attempt one delivery. Returns seconds until the next attempt, or None when done."""
    delivery = WebhookDelivery.objects.select_related("webhook").filter(pk=delivery_id).first()
    if delivery is None or delivery.status != "pending":
        return None
    if not delivery.webhook.is_active:  # deactivated while retries were pending: stop sending
        delivery.status, delivery.next_attempt_at, delivery.last_error = "failed", None, "Webhook deactivated."
        delivery.save(update_fields=["status", "next_attempt_at", "last_error"])
        return None
    body = json.dumps(delivery.payload, separators=(",", ":"), sort_keys=True).encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "Loom-Webhooks/1",
        "X-Loom-Event": delivery.event,
        "X-Loom-Delivery": str(delivery.pk),
        SIGNATURE_HEADER: sign(decrypt_secret(delivery.webhook.encrypted_secret), body, int(time.time())),
    }
    delivery.attempts += 1
    try:
        response = requests.post(
            delivery.webhook.url, data=body, headers=headers, timeout=TIMEOUT_S, allow_redirects=False
        )
        delivery.last_status_code, delivery.last_error = response.status_code, ""
        ok = 200 <= response.status_code < 300
    except requests.RequestException as exc:
        delivery.last_status_code, delivery.last_error, ok = None, f"{type(exc).__name__}: {exc}"[:500], False
    if ok:
        delivery.status, delivery.delivered_at, delivery.next_attempt_at = "delivered", timezone.now(), None
        retry_in = None
    elif delivery.attempts >= MAX_ATTEMPTS:
        delivery.status, delivery.next_attempt_at, retry_in = "failed", None, None
    else:
        retry_in = backoff_seconds(delivery.attempts)
        delivery.next_attempt_at = timezone.now() + timezone.timedelta(seconds=retry_in)
    delivery.save()
    return retry_in


@transaction.atomic
def deactivate_webhook(*, actor: Any, webhook: Webhook) -> Webhook:
    """Stop sending to the URL. Its delivery log stays; deactivating twice changes nothing."""
    webhook = Webhook.objects.select_for_update().get(pk=webhook.pk)
    if webhook.is_active:
        webhook.is_active = False
        webhook.save(update_fields=["is_active"])
        record("webhook.deactivated", organization=webhook.organization, actor=actor, target=webhook, url=webhook.url)
    return webhook
