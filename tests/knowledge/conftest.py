"""Knowledge test helpers: what the queue would run, run here (the task function itself), and the sources
a test needs, embedded with the bundled MiniLM (loaded once per process)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any
from unittest import mock

import pytest

from knowledge import dispatch, services, tasks, vectors
from knowledge.models import KnowledgeSource


def require_pgvector() -> None:
    """Skip where this Postgres has no ``vector`` extension; fail instead under ``LOOM_REQUIRE_PGVECTOR``.

    ``bin/test`` reruns the ``pgvector`` tests on the embedded Postgres (the newcomer's default, whose
    wheel ships the extension) with that variable set when the configured server cannot create it.
    """
    if vectors.extension_installed():
        return
    message = (
        "this Postgres has no 'vector' extension (Debian: postgresql-15-pgvector); bin/test reruns these "
        "tests on the embedded Postgres, which has it"
    )
    if os.environ.get("LOOM_REQUIRE_PGVECTOR"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture
def sent_tasks() -> Iterator[list[tuple[str, list[Any], str]]]:
    """Every task message knowledge sends, as (name, args, queue), instead of reaching the broker."""
    sent: list[tuple[str, list[Any], str]] = []

    def record(name: str, args: list[Any], queue: str) -> None:
        sent.append((name, args, queue))

    with mock.patch.object(dispatch.app, "send_task", side_effect=record):
        yield sent


def run_sent(sent: list[tuple[str, list[Any], str]]) -> int:
    """Run the sent embedding tasks, as the default queue's worker would; how many sources they embedded."""
    done = 0
    for name, args, queue in sent:
        assert (name, queue) == (dispatch.EMBED_SOURCES, "default")
        done += tasks.embed_sources(*args)
    sent.clear()
    return done


@pytest.fixture
def add_text(
    django_capture_on_commit_callbacks: Any, sent_tasks: list[tuple[str, list[Any], str]]
) -> Callable[..., KnowledgeSource]:
    """Add a text source to a project and embed it through the task, as production would."""

    def add(project: Any, text: str, title: str = "Notes", **metadata: Any) -> KnowledgeSource:
        with django_capture_on_commit_callbacks(execute=True):
            source = services.create_source(
                organization=project.organization, project=project, title=title, text=text, **metadata
            )
        run_sent(sent_tasks)
        source.refresh_from_db()
        return source

    return add
