"""Secrets shown once stay out of Redis and the logs: API keys and webhook signing secrets.

After keys and a webhook are created through the API and used, a job is submitted
(its task goes through the real Redis broker), run on the echo stub and its webhook
delivered (signed) to a receiver on loopback, every key and value in Redis is read
back, Celery's base64 message bodies decoded, and every log record of the run
(SQL with its parameters included) searched. The database rows are swept by
``tests/platform/test_api_key_secrets.py``.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest
import redis
from django.conf import settings
from django.db import connection

from apikeys.models import ApiKey
from generation.execution import run_job
from generation.models import GenerationJob, WebhookDelivery
from generation.webhooks import SIGNATURE_HEADER, deliver, verify
from workers.celery import app as celery_app
from workers.stub import StubEngine

pytestmark = pytest.mark.django_db(transaction=True)


class Receiver(BaseHTTPRequestHandler):
    received: list[tuple[dict[str, str], bytes]] = []

    def do_POST(self) -> None:  # http.server calls it by this name
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        Receiver.received.append((dict(self.headers), body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:  # quiet
        pass


@pytest.fixture
def receiver() -> Iterator[str]:
    Receiver.received = []
    server = HTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hooks/loom"
    server.shutdown()


@pytest.fixture
def logged(caplog):
    """Every record at DEBUG, SQL statements with their parameters included."""
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="django.db.backends")
    connection.force_debug_cursor = True
    yield caplog
    connection.force_debug_cursor = False


def _forget_broker_connections() -> None:
    # Celery caches its producer pool per app; kombu keys pools by URL *and* transport options,
    # so dropping the app's handles makes the next publish use the current options.
    celery_app._pool = None
    celery_app.amqp._producer_pool = None


@pytest.fixture
def private_queues() -> Iterator[str]:
    """This test's task messages under a Celery key prefix of their own.

    Worker and browser tests leave the session's real workers consuming the suite's
    queues; they would take the job and its webhook delivery before the sweep reads
    the messages back from Redis (and run the job themselves).
    """
    saved = celery_app.conf.broker_transport_options
    prefix = f"loom-test-sweep-{uuid.uuid4().hex[:8]}:"
    celery_app.conf.broker_transport_options = {**saved, "global_keyprefix": prefix}
    _forget_broker_connections()
    yield prefix
    celery_app.conf.broker_transport_options = saved
    _forget_broker_connections()
    client = redis.Redis.from_url(settings.REDIS_URL)
    for key in client.scan_iter(match=f"{prefix}*", count=1000):
        client.delete(key)


def _redis_texts() -> Iterator[tuple[str, str]]:
    """(key, text) for every key of the Redis database the platform uses; Celery bodies decoded too."""
    client = redis.Redis.from_url(settings.REDIS_URL)
    for raw_key in client.scan_iter(count=1000):
        key = raw_key.decode("latin-1")
        kind = client.type(raw_key).decode()
        if kind == "string":
            values = [client.get(raw_key)]
        elif kind == "list":
            values = client.lrange(raw_key, 0, -1)
        elif kind == "hash":
            values = [part for pair in client.hgetall(raw_key).items() for part in pair]
        elif kind == "set":
            values = list(client.smembers(raw_key))
        elif kind == "zset":
            values = client.zrange(raw_key, 0, -1)
        else:
            values = []
        yield key, key
        for value in values:
            if value is None:
                continue
            text = value.decode("latin-1") if isinstance(value, bytes) else str(value)
            yield key, text
            yield from ((key, decoded) for decoded in _celery_bodies(text))


def _celery_bodies(text: str) -> Iterator[str]:
    """Kombu stores a message as JSON whose ``body`` is base64: the task's arguments are only in there."""
    try:
        message = json.loads(text)
    except ValueError:
        return
    if isinstance(message, list) and len(message) >= 1 and isinstance(message[0], str):  # unacked: [msg, ...]
        yield from _celery_bodies(message[0])
        return
    if isinstance(message, dict) and message.get("properties", {}).get("body_encoding") == "base64":
        yield base64.b64decode(message["body"]).decode("latin-1")


def _logged(records: list[logging.LogRecord]) -> Iterator[str]:
    for record in records:
        yield record.getMessage()
        yield repr(record.__dict__)


def test_no_secret_reaches_redis_or_the_logs(cast, client_for, receiver, logged, private_queues):
    # given: two keys and a webhook, created through the API
    admin = client_for(cast.admin)
    created_keys = [admin.post("/api/v1/api-keys/", {"name": name}, format="json") for name in ("CI", "Spare")]
    assert [r.status_code for r in created_keys] == [201, 201]
    keys = [r.json()["key"] for r in created_keys]
    hook = admin.post("/api/v1/webhooks/", {"url": receiver}, format="json")
    assert hook.status_code == 201, hook.content
    webhook_secret = hook.json()["secret"]
    # when: the keys are used, misused and one revoked; a job runs and its webhook is delivered
    writer = client_for(cast.admin)
    writer.logout()
    writer.credentials(HTTP_AUTHORIZATION=f"Bearer {keys[0]}")
    assert writer.get("/api/v1/projects/").status_code == 200
    submitted = writer.post(
        "/api/v1/jobs/",
        {"project": str(cast.project.pk), "template": "product-description", "num_variants": 1,
         "inputs": {"product": "Sweep bulbs"}},
        format="json",
    )
    assert submitted.status_code == 201, submitted.content
    job_id = submitted.json()["id"]
    writer.credentials(HTTP_AUTHORIZATION=f"Bearer {keys[0][:-3]}xyz")
    assert writer.get("/api/v1/projects/").status_code == 401
    assert admin.delete(f"/api/v1/api-keys/{created_keys[1].json()['id']}/").status_code == 204
    writer.credentials(HTTP_AUTHORIZATION=f"Bearer {keys[1]}")
    assert writer.get("/api/v1/projects/").status_code == 401
    job = run_job(job_id, engine=StubEngine(token_s=0))
    assert job.status == "succeeded"
    delivery = WebhookDelivery.objects.get(job_id=job_id)
    assert deliver(delivery.pk) is None
    # the secret did its job: the receiver got a body signed with it
    ((headers, body),) = Receiver.received
    assert verify(webhook_secret, body, headers[SIGNATURE_HEADER])

    stored = list(_redis_texts())
    log_text = list(_logged(logged.records))

    # then: the sweep reads what it should: the job's task message and the keys' rate-limit counters
    assert any(job_id in text for key, text in stored if key == f"{private_queues}generation"), "no task message"
    writer_key = ApiKey.objects.get(pk=created_keys[0].json()["id"])
    assert any(str(writer_key.pk) in key for key, _ in stored), "no rate-limit counter of the key"
    assert any(str(delivery.pk) in text for key, text in stored if key == f"{private_queues}default"), (
        "no webhook delivery task"
    )
    assert any("generation_generationjob" in text for text in log_text), "SQL was not logged"
    assert GenerationJob.objects.filter(pk=job_id, status="succeeded").exists()
    # ... and no secret is anywhere in it
    needles = [webhook_secret, webhook_secret.removeprefix("whsec_")]
    for key in keys:
        needles += [key, key.split("_", 2)[2]]
    assert all(len(n) >= 32 for n in needles)
    for needle in needles:
        assert not [key for key, text in stored if needle in text], "a secret is in Redis"
        assert not [text for text in log_text if needle in text], "a secret is in the logs"
