"""Streamed text: engine pieces → Redis Stream → Server-Sent Events, and nothing lost on the way.

Jobs run in this process with the echo stub (``run_job(..., engine=StubEngine(...))``), committed
(transactional tests), so the flusher thread, the end published after commit and a real gunicorn
serving the stream all see them.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any
from unittest import mock

import pytest
import redis
import requests
from django.conf import settings as django_settings
from django.db import connection
from rest_framework.test import APIClient

from bench.harness import RedisServer, WebServer, current_database_url, wait_for
from generation import services, streaming
from generation.execution import run_job
from generation.models import GenerationJob, JobStatus
from tests.support.factories import PASSWORD
from tests.support.models import tiny_model
from workers.engine import GenerationRequest, generate_batch
from workers.stub import StubEngine

pytestmark = pytest.mark.django_db(transaction=True)

#: Echoed word by word by the stub: the stored text is these words, up to max_new_tokens.
INPUTS = {"product": "Linen tea towel", "features": "100% linen, stonewashed, hangs from a loop", "audience": "cooks"}
MESSAGES = [{"role": "user", "content": "Write one sentence about a white ceramic mug."}]


def _submit(project: Any, **params: Any) -> GenerationJob:
    version = services.resolve_version(project.organization, "product-description")
    with mock.patch("generation.dispatch.enqueue"):
        job, _ = services.submit_generation(
            organization=project.organization, project=project, version=version, inputs=INPUTS,
            params={"num_variants": 2, "max_new_tokens": 40, "seed": 3, **params},
        )
    return job


def _parse(body: str) -> list[dict[str, Any]]:
    """SSE text as events: {"id", "event", "data"} (comments and the retry field left out)."""
    events = []
    for block in body.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if line and not line.startswith(":"))
        if "event" in fields:
            events.append({"id": fields["id"], "event": fields["event"], "data": json.loads(fields["data"])})
    return events


def _texts(events: list[dict[str, Any]]) -> dict[int, str]:
    """Each variant's text as a client builds it: deltas appended, dropped at every start."""
    texts: dict[int, str] = {}
    for event in events:
        if event["event"] == "start":
            texts = {}
        elif event["event"] == "delta":
            index = event["data"]["variant"]
            texts[index] = texts.get(index, "") + event["data"]["text"]
    return texts


def _stored(job: GenerationJob) -> dict[int, str]:
    return {v.index: v.text for v in job.variants.filter(revision=0)}


def _stream(client: Any, job: GenerationJob, last_event_id: str | None = None) -> Any:
    headers = {"HTTP_ACCEPT": "text/event-stream"}
    if last_event_id is not None:
        headers["HTTP_LAST_EVENT_ID"] = last_event_id
    return client.get(f"/api/v1/jobs/{job.pk}/stream", **headers)


def _redis_events(job: GenerationJob) -> list[dict[str, Any]]:
    client = redis.Redis.from_url(django_settings.REDIS_URL, decode_responses=True)
    return [
        {"id": entry_id, "event": fields["event"], "data": json.loads(fields["data"])}
        for entry_id, fields in client.xrange(streaming.stream_key(job.pk))
    ]


# --- engines -------------------------------------------------------------------------------------


def test_in_process_engine_pieces_add_up_to_each_text_even_from_random_tokens():
    # given: a random model writes arbitrary byte-level BPE tokens (split multi-byte characters, odd spaces)
    pieces: dict[int, list[str]] = {seed: [] for seed in range(12)}
    requests_ = [
        GenerationRequest(messages=MESSAGES, max_new_tokens=64, temperature=1.0, top_p=1.0, seed=seed,
                          on_text=pieces[seed].append)
        for seed in pieces
    ]
    # when
    results = generate_batch(tiny_model(), requests_)
    # then
    for seed, result in zip(pieces, results, strict=True):
        assert "".join(pieces[seed]) == result.text
        assert all(pieces[seed])  # no empty pieces
        if result.completion_tokens:
            assert result.first_token_s is not None and 0 <= result.first_token_s <= result.seconds + 1


def test_stub_engine_pieces_add_up_to_its_text():
    pieces: list[str] = []
    request = GenerationRequest(messages=[{"role": "user", "content": "one two  three\nfour"}], max_new_tokens=3,
                                on_text=pieces.append)

    result = StubEngine(token_s=0).generate([request])[0]

    assert (pieces, result.text, result.finish_reason) == (["one", " two", " three"], "one two three", "length")
    assert result.first_token_s is not None


# --- a job's stream ------------------------------------------------------------------------------


def test_a_job_streams_deltas_that_add_up_to_its_stored_variants_then_ends(cast):
    job = _submit(cast.project)

    job = run_job(job.pk, engine=StubEngine(token_s=0.001))

    assert job.status == JobStatus.SUCCEEDED
    events = _redis_events(job)
    assert events[0] == {"id": events[0]["id"], "event": "start", "data": {"attempt": 1, "variants": 2}}
    assert events[-1]["event"] == "end"
    assert events[-1]["data"] == {"status": "succeeded", "failure_reason": ""}
    assert [e["event"] for e in events[1:-1]] == ["delta"] * (len(events) - 2)
    assert _texts(events) == _stored(job)
    assert all(_stored(job).values())  # the stub echoed something into each variant


def test_the_first_token_time_is_recorded_once(cast):
    job = _submit(cast.project)

    job = run_job(job.pk, engine=StubEngine(token_s=0.001))

    job.refresh_from_db()
    assert job.first_token_ms is not None
    assert 0 <= job.first_token_ms <= (job.finished_at - job.created_at).total_seconds() * 1000


def test_a_job_canceled_before_it_ran_ends_its_stream(cast, client_for):
    job = _submit(cast.project)

    services.cancel_job(job=job, actor=cast.editor)

    events = _redis_events(job)
    assert [(e["event"], e["data"]["status"]) for e in events] == [("end", "canceled")]
    answered = _parse(_stream(client_for(cast.viewer), job).content.decode())
    assert answered == events


# --- the SSE endpoint ----------------------------------------------------------------------------


def test_a_final_job_is_answered_at_once_with_every_event(cast, key_for):
    job = run_job(_submit(cast.project).pk, engine=StubEngine(token_s=0))
    client, _, _ = key_for(scope="read")

    response = _stream(client, job)

    assert response.status_code == 200
    assert response["Content-Type"] == "text/event-stream"
    assert response["Cache-Control"] == "no-store"
    events = _parse(response.content.decode())
    assert events == _redis_events(job)
    assert _texts(events) == _stored(job)


def test_reconnecting_with_last_event_id_gets_exactly_the_rest(cast, client_for):
    job = run_job(_submit(cast.project).pk, engine=StubEngine(token_s=0.001))
    everything = _parse(_stream(client_for(cast.viewer), job).content.decode())
    assert len(everything) >= 4

    rest = _parse(_stream(client_for(cast.viewer), job, last_event_id=everything[1]["id"]).content.decode())

    assert rest == everything[2:]


def test_an_expired_stream_is_rebuilt_from_the_stored_variants(cast, client_for):
    job = run_job(_submit(cast.project).pk, engine=StubEngine(token_s=0))
    redis.Redis.from_url(django_settings.REDIS_URL).delete(streaming.stream_key(job.pk))

    events = _parse(_stream(client_for(cast.viewer), job).content.decode())
    rest = _parse(_stream(client_for(cast.viewer), job, last_event_id="stored-2").content.decode())

    assert [e["id"] for e in events] == [f"stored-{n}" for n in range(1, len(events) + 1)]
    assert [e["event"] for e in events] == ["start", "delta", "delta", "end"]
    assert _texts(events) == _stored(job)
    assert events[-1]["data"] == {"status": "succeeded", "failure_reason": ""}
    assert rest == events[2:]


@pytest.mark.parametrize("last_event_id", ["yesterday", "0", "1-2-3", "stored-x", "\u00e9"])
def test_a_last_event_id_the_stream_never_sent_replays_it_from_the_start(cast, client_for, last_event_id):
    job = run_job(_submit(cast.project).pk, engine=StubEngine(token_s=0))
    everything = _parse(_stream(client_for(cast.viewer), job).content.decode())

    response = _stream(client_for(cast.viewer), job, last_event_id=last_event_id)

    assert response.status_code == 200
    assert _parse(response.content.decode()) == everything
    assert everything[0]["event"] == "start"


def test_outsider_gets_404_and_anonymous_is_refused(cast, client_for, outsider_key):
    job = run_job(_submit(cast.project).pk, engine=StubEngine(token_s=0))

    outsider = [_stream(client_for(cast.outsider), job), _stream(outsider_key, job)]
    anonymous = _stream(APIClient(), job)

    assert [r.status_code for r in outsider] == [404, 404]
    assert all(r.json()["code"] == "not_found" for r in outsider)
    assert "delta" not in b"".join(r.content for r in outsider).decode()
    assert anonymous.status_code in (401, 403)


def test_a_project_key_of_another_project_gets_404(cast, key_for):
    job = run_job(_submit(cast.project).pk, engine=StubEngine(token_s=0))
    client, _, _ = key_for(scope="read", project=cast.sibling_project)

    assert _stream(client, job).status_code == 404


def test_a_process_following_too_many_streams_answers_503(cast, client_for, settings):
    settings.WEB_STREAMS = 0
    job = _submit(cast.project)  # queued: its stream would be followed live

    response = _stream(client_for(cast.viewer), job)

    assert response.status_code == 503
    assert response.json()["code"] == "too_many_streams"
    assert response["Retry-After"] == "5"


def test_a_queued_job_stream_ends_after_its_time_and_gives_its_slot_back(cast, client_for, settings):
    settings.GENERATION_STREAM_MAX_S = 0.2
    job = _submit(cast.project)

    response = _stream(client_for(cast.viewer), job)
    body = b"".join(response.streaming_content).decode()
    response.close()

    assert body.startswith("retry: 1000\n\n")
    assert _parse(body) == []
    assert streaming.slots.used == 0


# --- faults --------------------------------------------------------------------------------------


@pytest.fixture
def own_redis(tmp_path: Any, settings: Any) -> Iterator[RedisServer]:
    """A Redis of its own for the streams (the cache, broker and cancel flags stay on the suite's)."""
    server = RedisServer(tmp_path / "redis")
    server.start()
    settings.REDIS_URL = server.url
    yield server
    server.stop()


def _run_in_thread(job: GenerationJob, engine: Any) -> threading.Thread:
    def run() -> None:
        try:
            run_job(job.pk, engine=engine)
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_redis_lost_mid_stream_fails_nothing_and_the_stream_is_rebuilt(cast, client_for, own_redis):
    # given: a job streaming into a Redis that dies after its first deltas
    job = _submit(cast.project, max_new_tokens=60)
    thread = _run_in_thread(job, StubEngine(token_s=0.03))
    reader = redis.Redis.from_url(own_redis.url, decode_responses=True)
    wait_for(lambda: reader.xlen(streaming.stream_key(job.pk)) >= 2, 10, "the first deltas")
    # when
    own_redis.crash()
    thread.join(30)
    # then: the job and its variants are whole
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED
    assert all(len(text.split()) > 5 for text in _stored(job).values())
    assert job.first_token_ms is not None
    # and with Redis back (what it had synced, no end), a reader gets the stored text and the end
    own_redis.start()
    events = _parse(_stream(client_for(cast.viewer), job).content.decode())
    assert _texts(events) == _stored(job)
    assert events[-1]["event"] == "end"


# --- a real server -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def web(django_db_setup: None, django_db_blocker: Any) -> Iterator[WebServer]:
    """gunicorn as deployed, on the test database: a streamed answer is really streamed."""
    with django_db_blocker.unblock():
        env = {
            "DJANGO_SETTINGS_MODULE": "config.settings.test",
            "DATABASE_URL": current_database_url(),
            "REDIS_URL": django_settings.REDIS_URL,
            "GENERATION_STREAM_MAX_S": "60",
        }
    server = WebServer(env, workers=1, threads=2, name="streaming-web")
    server.start()
    yield server
    server.stop()


def _read_events(response: requests.Response, until: Any) -> tuple[list[dict[str, Any]], bool]:
    """Events off a live response until ``until(events)`` or the server ends it; and whether it ended."""
    events: list[dict[str, Any]] = []
    block: list[str] = []
    for line in response.iter_lines(decode_unicode=True):
        if line:
            block.append(line)
            continue
        events += _parse("\n".join(block) + "\n\n")
        block = []
        if until(events):
            return events, False
    return events, True


def test_live_stream_through_gunicorn_and_a_client_that_drops_out_loses_nothing(cast, key_for, web):
    # given: two clients following a queued job, with an API key
    _, _, secret = key_for(scope="read")
    job = _submit(cast.project, max_new_tokens=30)
    url = f"{web.base_url}/api/v1/jobs/{job.pk}/stream"
    headers = {"Authorization": f"Bearer {secret}", "Accept": "text/event-stream"}
    staying = requests.get(url, headers=headers, stream=True, timeout=30)
    leaving = requests.get(url, headers=headers, stream=True, timeout=30)
    assert (staying.status_code, staying.headers["Content-Type"]) == (200, "text/event-stream")
    # when: the job runs; one client leaves after its first deltas
    thread = _run_in_thread(job, StubEngine(token_s=0.05))
    before, ended = _read_events(leaving, lambda events: sum(e["event"] == "delta" for e in events) >= 2)
    leaving.close()
    assert not ended  # it left mid-stream: the job was still writing
    seen, ended = _read_events(staying, lambda events: False)
    thread.join(30)
    # then: the client that stayed saw the text grow and the end, and the stream closed by itself
    job.refresh_from_db()
    assert ended and seen[-1]["event"] == "end" and seen[-1]["data"]["status"] == "succeeded"
    assert sum(e["event"] == "delta" for e in seen) > len(_stored(job))  # more than one piece per variant
    assert _texts(seen) == _stored(job)
    # and the one that left, reconnecting from its last event, gets exactly the rest
    rest = requests.get(url, headers={**headers, "Last-Event-ID": before[-1]["id"]}, timeout=30)
    assert before + _parse(rest.text) == seen
    assert _texts(before + _parse(rest.text)) == _stored(job)


# --- the job page --------------------------------------------------------------------------------


def test_the_page_of_an_unfinished_job_follows_its_stream_and_a_finished_one_shows_the_stored_variants(
    cast, client_for
):
    client = client_for(cast.viewer)
    queued = _submit(cast.project)
    finished = run_job(_submit(cast.project).pk, engine=StubEngine(token_s=0))

    running_page = client.get(f"/jobs/{queued.pk}/").content.decode()
    polled = client.get(f"/jobs/{queued.pk}/status/").content.decode()
    final_page = client.get(f"/jobs/{finished.pk}/").content.decode()

    assert "js/job-stream.js" in running_page
    for html in (running_page, polled):  # the polled fragment keeps the streamed text in place (hx-preserve)
        assert 'id="job-stream"' in html and 'hx-preserve="true"' in html
        assert f'data-stream="/api/v1/jobs/{queued.pk}/stream"' in html
    assert 'id="job-stream"' not in final_page
    assert 'id="variant-text-0"' in final_page


@pytest.mark.browser
@pytest.mark.timeout(180)
def test_the_job_page_shows_the_text_as_it_is_written_then_the_stored_variants(browser_page, live_server, cast):
    page, base = browser_page, live_server.url
    job = _submit(cast.project, max_new_tokens=30)
    page.goto(f"{base}/accounts/login/")
    page.fill("input[name=login]", cast.viewer.email)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/")
    page.goto(f"{base}/jobs/{job.pk}/")
    # when: the job writes a word every 0.1 s (streams end every second in tests: the page reconnects)
    thread = _run_in_thread(job, StubEngine(token_s=0.1))
    # then: text shows while the job is still running ...
    page.wait_for_function(
        "() => (document.getElementById('job-stream-text-0')?.textContent || '').split(' ').length >= 3",
        timeout=30_000,
    )
    assert GenerationJob.objects.get(pk=job.pk).status == JobStatus.RUNNING
    # ... and the stored variants replace it when the job ends
    page.wait_for_selector("#variant-text-1", timeout=60_000)
    thread.join(30)
    assert page.locator("#job-stream").count() == 0
    stored = _stored(GenerationJob.objects.get(pk=job.pk))
    assert page.locator("#variant-text-0").inner_text().strip() == stored[0]


def _shown(events: list[tuple[str, dict[str, Any]]], index: int = 0) -> str:
    return "".join(data["text"] for name, data in events if name == "delta" and data["variant"] == index)


def test_a_streamed_variant_shows_no_blocked_term_and_stops_at_it(settings):
    settings.MODERATION_BLOCKLIST = ["forbiddenword"]
    from generation.moderation import moderate

    stream = streaming.JobStream("job", 0.0, 1, 2, screen=lambda text: not moderate(text).blocked)
    shown: list[tuple[str, dict[str, Any]]] = []
    for piece in ["Soft ", "linen for", "bidden", "word", " towels", " that last."]:
        stream.write(0, piece)
        stream.write(1, piece.replace("forbidden", "fine").replace("bidden", "").replace("word", "wool"))
        shown += stream.drain()
    shown += stream.drain(final=True)

    assert _shown(shown, 0) == "Soft linen "  # the word being written waits until it is whole
    assert "forbidden" not in json.dumps(shown)
    assert _shown(shown, 1) == "Soft linen forwool towels that last."  # the other variant streams to its end


def test_a_streamed_variant_that_repeats_hidden_prompt_material_stops_within_the_leak_window():
    from generation.leakage import LEAK_NGRAM_WORDS, LeakGuard

    secret = "always mention the internal discount code for loyal members of the wholesale programme"
    guard = LeakGuard([("brand voice of another project", secret)])
    stream = streaming.JobStream("job", 0.0, 1, 1, screen=lambda text: not guard.check(text).blocked)
    shown: list[tuple[str, dict[str, Any]]] = []
    for word in ("Our mugs: " + secret + " and more words after it").split(" "):
        stream.write(0, word + " ")
        shown += stream.drain()
    shown += stream.drain(final=True)

    text = _shown(shown)
    assert len(text.split()) < 2 + LEAK_NGRAM_WORDS  # what showed before the filter could see a leak
    assert secret not in text
