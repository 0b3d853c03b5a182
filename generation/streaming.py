"""A job's text as it is written: engine → Redis Stream → Server-Sent Events.

Writing (the worker): ``open_job_stream`` gives each variant's ``GenerationRequest.on_text``. The engine's
thread only appends the piece to a list in memory; a flusher thread sends what gathered every
``FLUSH_INTERVAL_S`` to the job's Redis Stream (one pipeline for every job of the process), so a slow or
lost Redis never holds a decode step, and a Redis error only stops that job's streaming (logged): the
job runs and is stored as ever. The flusher also records the job's ``first_token_ms`` once, when its
first piece arrives. ``publish_end`` (``generation.lifecycle.job_finished``, after the commit that made
the job final, wherever that happened) adds the ``end`` event and lets the stream expire.

Reading (``GET /api/v1/jobs/{id}/stream``): ``response_for`` answers a final job at once from the
stream, or from the stored variants once the stream has expired, and follows a running one live.

Events (SSE; ``id`` is the Redis stream id, so a client reconnecting with ``Last-Event-ID`` gets exactly
what it missed)::

    id: 1764826837123-0
    event: start
    data: {"attempt": 1, "variants": 2}

    id: 1764826837170-0
    event: delta
    data: {"variant": 0, "text": "Soft linen"}

    id: 1764826838011-0
    event: end
    data: {"status": "succeeded", "failure_reason": ""}

``start`` begins the job's text (an attempt, or a restatement): a client drops what it has. After it,
the ``delta`` texts of a variant add up to that variant's stored text: when they would not (the
stream lost pieces in a Redis outage, or the stored text differs, e.g. withheld by moderation), a
``start`` and one ``delta`` per stored variant come before ``end``. Events rebuilt from the database
(the stream expired, or never reached Redis) have the ids ``stored-1``, ``stored-2`` ... ``end`` is
the last event; the connection closes after it. Comments (``: keepalive``) come every ``HEARTBEAT_S``
while nothing happens, and a connection ends after ``GENERATION_STREAM_MAX_S`` (the client reconnects
with its ``Last-Event-ID``, after the ``retry`` the stream opens with), so a job waiting long in the
queue never holds a web thread for good.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache, partial
from typing import Any

import redis
from django.conf import settings
from django.db import connection
from django.http import HttpResponse, StreamingHttpResponse

from core.errors import DomainError
from generation.models import FINAL_STATUSES, GenerationJob, Variant

logger = logging.getLogger(__name__)

#: How often buffered pieces go to Redis. A person reading sees 20 updates a second at most; a job's
#: stream gets one entry per variant per flush at most, whatever the tokens per second.
FLUSH_INTERVAL_S = 0.05
#: Entries kept per job stream (approximate trim). A job writes at most variants x max new tokens
#: deltas (8 x 1024 at the defaults), coalesced per flush far fewer: the cap is never reached by a
#: job, it only bounds a runaway one.
STREAM_MAXLEN = 10_000
#: A stream's life after its ``end``: reconnecting clients replay it from Redis until then, and
#: from the stored variants after.
ENDED_TTL_S = 15 * 60
#: Redis round trips of the writer: the flusher thread waits at most this long for a lost Redis.
WRITE_TIMEOUT_S = 1.0
#: Keepalive comments while nothing happens (proxies close idle connections at 30-60 s).
HEARTBEAT_S = 15.0
#: What a client waits before reconnecting (the SSE ``retry`` field), in milliseconds.
RECONNECT_MS = 1000
#: Entries read per XREAD.
READ_COUNT = 500


def stream_key(job_id: Any) -> str:
    # Namespaced like the cache, so a test run never reads a developer's streams.
    return f"{settings.CACHES['default'].get('KEY_PREFIX', 'loom')}:job-stream:{job_id}"


def _running_ttl_s() -> int:
    # Renewed at every flush: a stream whose worker died expires on its own.
    return int(settings.GENERATION_JOB_DEADLINE_S + settings.GENERATION_LEASE_S + ENDED_TTL_S)


@lru_cache(maxsize=4)
def _writer_client(url: str) -> redis.Redis:
    return redis.Redis.from_url(
        url, socket_timeout=WRITE_TIMEOUT_S, socket_connect_timeout=WRITE_TIMEOUT_S, decode_responses=True
    )


@lru_cache(maxsize=4)
def _reader_client(url: str) -> redis.Redis:
    # A reader blocks in XREAD up to HEARTBEAT_S: its socket must wait longer than that.
    return redis.Redis.from_url(
        url, socket_timeout=HEARTBEAT_S + 5, socket_connect_timeout=WRITE_TIMEOUT_S, decode_responses=True
    )


# --- writing: the worker ---------------------------------------------------------------------------


class JobStream:
    """One attempt of one job: what its variants wrote since the last flush, and what was sent."""

    def __init__(
        self, job_id: Any, created_at: float, attempt: int, variants: int, screen: Callable[[str], bool] | None = None
    ) -> None:
        self.job_id = job_id
        #: Whether a variant's text so far may be shown (moderation, the prompt-leak filter): checked on
        #: everything received before any of it is sent; a variant that fails it streams nothing more.
        self.screen = screen
        self._received: dict[int, list[str]] = {}
        self._withheld: set[int] = set()
        self.key = stream_key(job_id)
        self.created_at = created_at
        self.attempt = attempt
        self.first_at: float | None = None  # wall time of the first piece
        self.first_recorded = False
        self.broken = False  # a Redis error: no more deltas; publish_end restates the stored text
        self.last_write = time.monotonic()
        self._pending: deque[tuple[int, str]] = deque()
        self._events: list[tuple[str, dict[str, Any]]] = [("start", {"attempt": attempt, "variants": variants})]
        self.streamed: dict[int, list[str]] = {}

    def writer(self, index: int) -> Callable[[str], None]:
        return partial(self.write, index)

    def write(self, index: int, piece: str) -> None:
        """On the engine's thread: append and return (a deque append is atomic, no lock needed)."""
        if self.first_at is None:
            self.first_at = time.time()
        self._pending.append((index, piece))
        self.last_write = time.monotonic()

    def drain(self, *, final: bool = False) -> list[tuple[str, dict[str, Any]]]:
        """The events to send now: the start (once), then one delta per variant with what it may show.

        The word still being written is held back until the next word begins (``final``: the run
        ended, everything received is released): a blocked term or a secret is checked whole before
        any of it is shown. The prompt-leak filter needs 8 words of a protected text to see a leak, so
        a stream that repeats one stops within them; the stored variant is withheld as ever.
        """
        events, self._events = self._events, []
        touched: set[int] = set()
        while self._pending:
            index, piece = self._pending.popleft()
            self._received.setdefault(index, []).append(piece)
            touched.add(index)
        for index in sorted(set(self._received) if final else touched):
            if index in self._withheld:
                continue
            received = "".join(self._received[index])
            if self.screen is not None and not self.screen(received):
                self._withheld.add(index)
                continue
            shown = received if final else _without_last_word(received)
            sent = self.streamed_text(index)
            if len(shown) > len(sent) and shown.startswith(sent):
                self.streamed.setdefault(index, []).append(shown[len(sent) :])
                events.append(("delta", {"variant": index, "text": shown[len(sent) :]}))
        return events

    def streamed_text(self, index: int) -> str:
        return "".join(self.streamed.get(index, []))


_LAST_WORD = re.compile(r"\S*$")


def _without_last_word(text: str) -> str:
    """The text up to the word still being written (everything when it ends in a space)."""
    match = _LAST_WORD.search(text)
    return text[: match.start()] if match else text


class _Streams:
    """The process's open job streams and the flusher thread that sends them (started on first use)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()  # one flush at a time: a job's events stay in order
        self._open: dict[str, JobStream] = {}
        self._thread: threading.Thread | None = None

    def open(self, job: GenerationJob, screen: Callable[[str], bool] | None = None) -> JobStream:
        with self._lock:
            stream = self._open.get(str(job.pk))
            if stream is None or stream.attempt != job.attempts:
                stream = JobStream(job.pk, job.created_at.timestamp(), job.attempts, job.num_variants, screen)
                self._open[str(job.pk)] = stream
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="generation-stream-flusher", daemon=True)
                self._thread.start()
            return stream

    def close(self, job_id: Any) -> JobStream | None:
        """Stop flushing a job's stream and send what it still holds; the stream, if this process had it."""
        with self._lock:
            stream = self._open.pop(str(job_id), None)
        if stream is not None:
            self.flush([stream], final=True)
        return stream

    def _run(self) -> None:
        while True:
            time.sleep(FLUSH_INTERVAL_S)
            try:
                with self._lock:
                    streams = list(self._open.values())
                    self._forget_abandoned()
                if streams:
                    self.flush(streams)
                    if any(s.first_at is not None and not s.first_recorded for s in streams):
                        _record_first_tokens(streams)
                        connection.close()  # this thread's own connection: never idle for long
            except Exception:  # the flusher must outlive anything one flush meets
                logger.exception("flushing generation streams failed")

    def _forget_abandoned(self) -> None:
        # A job whose run ended without reaching publish_end here (its task raised and was retried
        # elsewhere): nothing writes to it any more.
        horizon = time.monotonic() - _running_ttl_s()
        for job_id in [k for k, s in self._open.items() if s.last_write < horizon]:
            del self._open[job_id]

    def flush(self, streams: list[JobStream], *, final: bool = False) -> None:
        with self._flush_lock:
            pipe = _writer_client(settings.REDIS_URL).pipeline(transaction=False)
            sending = []
            for stream in streams:
                events = stream.drain(final=final)
                if stream.broken or not events:
                    continue
                for name, data in events:
                    _xadd(pipe, stream.key, name, data)
                pipe.expire(stream.key, _running_ttl_s())
                sending.append(stream)
            if not sending:
                return
            try:
                pipe.execute()
            except redis.RedisError as exc:
                logger.warning("streaming stops for %d generation jobs: %s", len(sending), exc)
                for stream in sending:
                    stream.broken = True


_streams = _Streams()


def _xadd(pipe: Any, key: str, name: str, data: dict[str, Any]) -> None:
    pipe.xadd(key, {"event": name, "data": json.dumps(data)}, maxlen=STREAM_MAXLEN, approximate=True)


def _record_first_tokens(streams: list[JobStream]) -> None:
    for stream in streams:
        if stream.first_at is None or stream.first_recorded:
            continue
        stream.first_recorded = True
        ms = max(0, round((stream.first_at - stream.created_at) * 1000))
        try:
            GenerationJob.objects.filter(pk=stream.job_id, first_token_ms__isnull=True).update(first_token_ms=ms)
        except Exception:  # a lost database costs this figure, never the job
            logger.warning("could not record the first token of job %s", stream.job_id, exc_info=True)


def open_job_stream(job: GenerationJob, screen: Callable[[str], bool] | None = None) -> JobStream:
    """The stream of the job's current attempt (the same one if asked twice); ``screen`` says whether a
    variant's text so far may be shown."""
    return _streams.open(job, screen)


def publish_end(job_id: Any) -> None:
    """After the commit that made the job final: the rest of its text, the ``end`` event, and expiry.

    Never raises: a job's end must not depend on Redis (readers rebuild it from the database).
    """
    try:
        stream = _streams.close(job_id)
        if stream is not None:
            _record_first_tokens([stream])
        job = GenerationJob.objects.filter(pk=job_id).values("status", "failure_reason", "num_variants").first()
        if job is None:
            return
        events = _restatement(job_id, job, stream) if stream is not None else []
        events.append(("end", {"status": job["status"], "failure_reason": job["failure_reason"]}))
        pipe = _writer_client(settings.REDIS_URL).pipeline(transaction=False)
        for name, data in events:
            _xadd(pipe, stream_key(job_id), name, data)
        pipe.expire(stream_key(job_id), ENDED_TTL_S)
        pipe.execute()
    except Exception:
        logger.warning("could not publish the end of job %s to its stream", job_id, exc_info=True)


def _restatement(job_id: Any, job: dict[str, Any], stream: JobStream) -> list[tuple[str, dict[str, Any]]]:
    """A start and the stored texts, if what was streamed does not add up to them; else nothing."""
    stored = dict(Variant.objects.filter(job_id=job_id, revision=0).values_list("index", "text"))
    if not stored:
        return []
    if not stream.broken and all(stream.streamed_text(i) == text for i, text in stored.items()):
        return []
    events: list[tuple[str, dict[str, Any]]] = [("start", {"attempt": stream.attempt, "variants": job["num_variants"]})]
    events += [("delta", {"variant": i, "text": text}) for i, text in sorted(stored.items()) if text]
    return events


# --- reading: the web ------------------------------------------------------------------------------

_REDIS_ID = re.compile(r"^\d{1,20}-\d{1,20}$")
_STORED_ID = re.compile(r"^stored-(\d{1,6})$")
CONTENT_TYPE = "text/event-stream"


class TooManyStreams(DomainError):
    status_code = 503
    code = "too_many_streams"
    retry_after = 5


@dataclass(frozen=True)
class Cursor:
    """Where a client is: after a Redis entry, or after the n-th event rebuilt from the database."""

    redis_id: str = "0-0"
    stored: int = 0

    @classmethod
    def parse(cls, last_event_id: str | None) -> Cursor:
        """An id this stream never sent (garbled, another server's) means from the beginning: a 400
        would stop a browser's EventSource for good, while a replay from ``start`` is always right."""
        value = (last_event_id or "").strip()
        if _REDIS_ID.match(value):
            return cls(redis_id=value)
        if match := _STORED_ID.match(value):
            return cls(stored=int(match.group(1)))
        return cls()


def _sse(event_id: str, name: str, data: str) -> str:
    return f"id: {event_id}\nevent: {name}\ndata: {data}\n\n"


def _entries(job_id: Any, after: str) -> list[tuple[str, str, str]] | None:
    """The stream's entries after ``after`` up to its end, or None if it is gone, unreachable or has no end."""
    try:
        raw = _reader_client(settings.REDIS_URL).xrange(stream_key(job_id), min="-", max="+")
    except redis.RedisError as exc:
        logger.warning("cannot read the stream of job %s: %s", job_id, exc)
        return None
    entries = [(entry_id, fields.get("event", ""), fields.get("data", "{}")) for entry_id, fields in raw]
    ends = [n for n, (_, name, _) in enumerate(entries) if name == "end"]
    if not ends:
        return None
    wanted = _after(after)
    return [entry for entry in entries[: ends[0] + 1] if _after(entry[0]) > wanted]


def _after(entry_id: str) -> tuple[int, int]:
    milliseconds, sequence = entry_id.split("-")
    return int(milliseconds), int(sequence)


def _stored_events(job: GenerationJob, cursor: Cursor) -> list[str]:
    """The job's text rebuilt from the database: start, one delta per stored variant, end."""
    texts = Variant.objects.filter(job=job, revision=0).order_by("index").values_list("index", "text")
    events = [("start", {"attempt": job.attempts, "variants": job.num_variants})]
    events += [("delta", {"variant": index, "text": text}) for index, text in texts if text]
    events.append(("end", {"status": job.status, "failure_reason": job.failure_reason}))
    return [
        _sse(f"stored-{n}", name, json.dumps(data))
        for n, (name, data) in enumerate(events, start=1)
        if n > cursor.stored
    ]


def final_events(job: GenerationJob, cursor: Cursor) -> list[str]:
    """Everything after ``cursor`` of a final job: from its stream while it lasts, else from the database."""
    if not cursor.stored:
        entries = _entries(job.pk, cursor.redis_id)
        if entries is not None:
            return [_sse(*entry) for entry in entries]
    return _stored_events(job, cursor)


def _release_db() -> None:
    # A stream lasts minutes: the web thread must not hold a database connection all that time
    # (hundreds of streams would exhaust Postgres'). Inside a test's transaction it stays.
    if not connection.in_atomic_block:
        connection.close()


def _final_job(job_id: Any) -> GenerationJob | None:
    try:
        job = GenerationJob.objects.filter(pk=job_id, status__in=FINAL_STATUSES).first()
    finally:
        _release_db()
    return job


def live_events(job_id: Any, cursor: Cursor, max_s: float) -> Iterator[str]:
    """A running job's events as they come, until its end or ``max_s``; keepalives while quiet."""
    yield f"retry: {RECONNECT_MS}\n\n"
    _release_db()
    key, after = stream_key(job_id), cursor.redis_id
    deadline = time.monotonic() + max_s
    while (remaining := deadline - time.monotonic()) > 0:
        wait_s = min(HEARTBEAT_S, remaining)
        try:
            got = _reader_client(settings.REDIS_URL).xread({key: after}, count=READ_COUNT, block=int(wait_s * 1000))
        except redis.RedisError as exc:
            logger.warning("cannot read the stream of job %s: %s", job_id, exc)
            time.sleep(min(1.0, max(remaining, 0)))
            got = None
        for _, entries in got or []:
            for entry_id, fields in entries:
                name = fields.get("event", "")
                yield _sse(entry_id, name, fields.get("data", "{}"))
                after = entry_id
                if name == "end":
                    return
        if got:
            continue
        yield ": keepalive\n\n"
        # Quiet for a while: the job may have ended without its end reaching the stream.
        job = _final_job(job_id)
        if job is not None:
            yield from _stored_events(job, Cursor())
            return


class _Slots:
    """The streams one web process serves at once (``WEB_STREAMS``); gunicorn has that many threads
    on top of ``WEB_THREADS`` (platform/config/gunicorn.py), so streams never take the threads of
    ordinary requests."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.used = 0

    def take(self) -> None:
        with self._lock:
            if self.used >= settings.WEB_STREAMS:
                raise TooManyStreams("This server follows as many job streams as it can; try again shortly.")
            self.used += 1

    def give_back(self) -> None:
        with self._lock:
            self.used -= 1


slots = _Slots()


class _Held:
    """A live stream's iterator that gives its slot back when the response is closed, started or not."""

    def __init__(self, events: Iterator[str]) -> None:
        self._events = events
        self._held = True

    def __iter__(self) -> _Held:
        return self

    def __next__(self) -> str:
        return next(self._events)

    def close(self) -> None:
        if self._held:
            self._held = False
            slots.give_back()
        close = getattr(self._events, "close", None)
        if close is not None:
            close()


def _headers(response: HttpResponse | StreamingHttpResponse) -> HttpResponse | StreamingHttpResponse:
    response["Cache-Control"] = "no-store"
    response["X-Accel-Buffering"] = "no"  # nginx: pass each event on at once
    return response


def response_for(job: GenerationJob, last_event_id: str | None) -> HttpResponse | StreamingHttpResponse:
    """The SSE answer for a job the caller may see: complete at once if it is final, else live."""
    cursor = Cursor.parse(last_event_id)
    if job.is_final:
        return _headers(HttpResponse("".join(final_events(job, cursor)), content_type=CONTENT_TYPE))
    slots.take()
    events = _Held(live_events(job.pk, cursor, settings.GENERATION_STREAM_MAX_S))
    return _headers(StreamingHttpResponse(events, content_type=CONTENT_TYPE))
