"""Brand adapters on OpenAI-compatible servers: how the engine names them and registers them on first use.

A small in-process HTTP server speaks the part of vLLM's and SGLang's protocol this concerns (the model
list, chat completions streamed as server-sent events, ``/load_lora_adapter``), so these run without
vLLM; tests/workers/test_vllm_backend.py proves the same against a real vLLM.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from workers.contract import AdapterRef, Backend, GenerationRequest
from workers.openai_engine import OpenAIEngine, OpenAIEngineError

ADAPTER = AdapterRef(name="brand-abc-v2", path="/adapters/abc/v2")


class FakeServer(ThreadingHTTPServer):
    def __init__(self, flavor: str, *, can_load: bool = True) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.flavor, self.can_load = flavor, can_load
        self.loaded: set[str] = set()
        self.loads: list[tuple[str, dict]] = []
        self.completions: list[dict] = []
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


class Handler(BaseHTTPRequestHandler):
    server: FakeServer

    def log_message(self, *args) -> None:  # quiet
        pass

    def _json(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        models = ["base", *sorted(self.server.loaded)]
        self._json(200, {"object": "list", "data": [{"id": m, "owned_by": self.server.flavor} for m in models]})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
        if self.path.endswith("/load_lora_adapter"):
            self.server.loads.append((self.path, body))
            if not self.server.can_load:
                return self._json(404, {"detail": "Not Found"})
            self.server.loaded.add(body["lora_name"])
            return self._json(200, {"message": "Success"})
        if not self.path.endswith("/chat/completions"):
            return self._json(200, {"count": 5})
        self.server.completions.append(body)
        adapter = body["model"] if self.server.flavor == "vllm" else body.get("lora_path")
        if adapter not in (None, "base") and adapter not in self.server.loaded:
            message = f"The model `{adapter}` does not exist."
            return self._json(404, {"error": {"message": message, "type": "NotFoundError", "code": 404}})
        self._stream(f"served by {adapter or 'base'}")

    def _stream(self, text: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        chunks = [
            {"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]},
            {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
            {"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}},
        ]
        for chunk in chunks:
            payload = {"id": "x", "object": "chat.completion.chunk", "created": 0, "model": "m", **chunk}
            self.wfile.write(f"data: {json.dumps(payload)}\n\n".encode())
        self.wfile.write(b"data: [DONE]\n\n")


@pytest.fixture
def serve():
    servers: list[FakeServer] = []

    def make(flavor: str, **kwargs) -> tuple[FakeServer, OpenAIEngine]:
        server = FakeServer(flavor, **kwargs)
        servers.append(server)
        return server, OpenAIEngine(Backend(kind="openai", model="base", base_url=server.base_url), retry_s=0)

    yield make
    for server in servers:
        server.shutdown()


def _request(adapter=ADAPTER) -> GenerationRequest:
    return GenerationRequest(
        messages=[{"role": "user", "content": "Hi"}], max_new_tokens=8, temperature=0, adapter=adapter
    )


def test_vllm_gets_an_unknown_adapter_registered_once_then_named_as_the_model(serve):
    server, engine = serve("vllm")
    first = engine.generate([_request()])[0]
    again, base = engine.generate([_request(), _request(adapter=None)])
    assert first.text == again.text == "served by brand-abc-v2" and base.text == "served by base"
    assert server.loads == [("/v1/load_lora_adapter", {"lora_name": ADAPTER.name, "lora_path": ADAPTER.path})]
    assert {c["model"] for c in server.completions} == {ADAPTER.name, "base"}


def test_sglang_gets_the_adapter_as_lora_path_and_registers_it_at_its_root(serve):
    server, engine = serve("sglang")
    assert engine.generate([_request()])[0].text == "served by brand-abc-v2"
    assert [path for path, _ in server.loads] == ["/load_lora_adapter"]
    assert server.completions[-1]["model"] == "base" and server.completions[-1]["lora_path"] == ADAPTER.name


def test_a_server_that_cannot_load_adapters_fails_the_request_saying_how_to_start_it(serve):
    _, engine = serve("vllm", can_load=False)
    with pytest.raises(OpenAIEngineError, match="VLLM_ALLOW_RUNTIME_LORA_UPDATING"):
        engine.generate([_request()])


def test_a_server_without_adapter_support_fails_instead_of_running_the_base_model(serve):
    server, engine = serve("llamacpp")
    with pytest.raises(OpenAIEngineError, match="cannot serve brand adapters"):
        engine.generate([_request()])
    assert server.completions == []  # nothing ran on the base model
