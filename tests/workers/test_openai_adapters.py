"""Brand adapters on OpenAI-compatible servers: how the engine names them and registers them on first use.

A small in-process HTTP server speaks the part of vLLM's and SGLang's protocol this concerns (the model
list, chat completions streamed as server-sent events, ``/load_lora_adapter``), so these run without
vLLM; tests/workers/test_vllm_backend.py proves the same against a real vLLM.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from workers.contract import AdapterRef, Backend, GenerationRequest
from workers.openai_engine import OpenAIEngine, OpenAIEngineError
from workers.zero_adapter import zero_twin

ADAPTER = AdapterRef(name="brand-abc-v2", path="/adapters/abc/v2")


class FakeServer(ThreadingHTTPServer):
    def __init__(self, flavor: str, *, can_load: bool = True) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.flavor, self.can_load = flavor, can_load
        self.loaded: dict[str, str] = {}  # name -> path, as vLLM lists them (``root``)
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
        models = [("base", "/models/base"), *sorted(self.server.loaded.items())]
        data = [{"id": m, "root": root, "owned_by": self.server.flavor} for m, root in models]
        self._json(200, {"object": "list", "data": data})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
        if self.path.endswith("/load_lora_adapter"):
            self.server.loads.append((self.path, body))
            if not self.server.can_load:
                return self._json(404, {"detail": "Not Found"})
            self.server.loaded[body["lora_name"]] = body["lora_path"]
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

    def make(flavor: str, server: FakeServer | None = None, **kwargs) -> tuple[FakeServer, OpenAIEngine]:
        if server is None:
            server = FakeServer(flavor, can_load=kwargs.pop("can_load", True))
            servers.append(server)
        backend = Backend(kind="openai", model="base", base_url=server.base_url)
        return server, OpenAIEngine(backend, retry_s=0, **kwargs)

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


def _adapter_folder(folder: Path, *, rank: int = 4, seed: int = 0) -> AdapterRef:
    """A peft-shaped adapter (two LoRA matrices of one projection, non-zero) written without torch."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    save_file(
        {
            "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight": rng.random((rank, 64), np.float32) + 1,
            "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight": rng.random((64, rank), np.float32) + 1,
        },
        str(folder / "adapter_model.safetensors"),
        metadata={"format": "pt"},
    )
    config = {"peft_type": "LORA", "r": rank, "lora_alpha": 2 * rank, "target_modules": ["q_proj"]}
    (folder / "adapter_config.json").write_text(json.dumps(config))
    return AdapterRef(name=f"brand-{folder.name}-v1", path=str(folder))


def test_a_zero_twin_has_the_adapters_shapes_and_only_zeros_and_is_written_once(tmp_path):
    adapter = _adapter_folder(tmp_path / "a")
    twin = zero_twin(adapter.path, tmp_path / "zero")
    original = load_file(f"{adapter.path}/adapter_model.safetensors")
    zeros = load_file(f"{twin.path}/adapter_model.safetensors")
    assert {k: (v.shape, v.dtype) for k, v in zeros.items()} == {k: (v.shape, v.dtype) for k, v in original.items()}
    assert all(not v.any() for v in zeros.values()) and all(v.all() for v in original.values())
    assert json.loads(Path(twin.path, "adapter_config.json").read_text())["r"] == 4
    assert twin.name.startswith("loom-zero-")
    # the same shapes and config (another version, other weights) share it; another rank does not
    assert zero_twin(_adapter_folder(tmp_path / "b", seed=1).path, tmp_path / "zero") == twin
    other = zero_twin(_adapter_folder(tmp_path / "c", rank=8).path, tmp_path / "zero")
    assert other != twin
    # no staging folders left behind
    assert {p.name for p in (tmp_path / "zero").iterdir()} == {Path(twin.path).name, Path(other.path).name}


def test_with_zero_adapters_on_base_requests_name_the_twin_once_an_adapter_is_about(serve, settings, tmp_path):
    settings.BRAND_ADAPTER_ROOT = tmp_path / "adapters"
    adapter = _adapter_folder(tmp_path / "adapters" / "p1" / "v1")
    server, engine = serve("vllm", zero_adapter_for_base=True)
    # given: nothing but the base model on the server: base requests go as they are
    assert engine.generate([_request(adapter=None)])[0].text == "served by base"
    # when: an adapter's request has been served
    engine.generate([_request(adapter=adapter)])
    with_adapter, base = engine.generate([_request(adapter=adapter), _request(adapter=None)])
    # then: base requests name the adapter's zero twin, registered once, and the adapter keeps its own
    assert with_adapter.text == f"served by {adapter.name}"
    assert base.text.startswith("served by loom-zero-")
    twin = base.text.removeprefix("served by ")
    assert [body["lora_name"] for _, body in server.loads] == [adapter.name, twin]
    assert Path(server.loaded[twin]).parent == settings.BRAND_ADAPTER_ROOT / "_zero"
    # and another worker's engine finds the adapters the server lists before its first base request
    _, other = serve("vllm", server=server, zero_adapter_for_base=True)
    assert other.generate([_request(adapter=None)])[0].text == f"served by {twin}"


def test_without_zero_adapters_base_requests_stay_on_the_base_model(serve, settings, tmp_path):
    settings.BRAND_ADAPTER_ROOT = tmp_path / "adapters"
    adapter = _adapter_folder(tmp_path / "adapters" / "p1" / "v1")
    _, engine = serve("vllm")  # the default: LOOM_VLLM_ZERO_ADAPTER_FOR_BASE off
    engine.generate([_request(adapter=adapter)])
    assert engine.generate([_request(adapter=None)])[0].text == "served by base"
    assert not (tmp_path / "adapters" / "_zero").exists()


def test_a_zero_twin_that_cannot_be_written_leaves_base_requests_as_they_were_and_is_tried_once(
    serve, settings, tmp_path, caplog
):
    (tmp_path / "not-a-folder").write_text("")
    settings.BRAND_ADAPTER_ROOT = tmp_path / "not-a-folder"  # nothing can be written under it
    adapter = _adapter_folder(tmp_path / "p1" / "v1")
    _, engine = serve("vllm", zero_adapter_for_base=True)
    for _ in range(3):
        engine.generate([_request(adapter=adapter)])
    assert engine.generate([_request(adapter=None)])[0].text == "served by base"
    assert sum("no zero adapter" in record.getMessage() for record in caplog.records) == 1
