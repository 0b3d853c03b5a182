"""A brand adapter's zero twin: the same LoRA shapes with every weight zero, so it changes nothing.

vLLM's CPU build (0.32) serves a batch that mixes LoRA and base requests wrongly: its torch LoRA ops
(``vllm/lora/ops/torch_ops/lora_ops.py``) gather each row's weights with ``lora_b_weights[indices]``,
and a base row's index is -1, which Python reads as the *last* adapter slot; so once that slot holds an
adapter, base rows in a mixed batch get that adapter's output. (The GPU kernels skip index -1.) A base
request that names a zero adapter instead has a real slot whose weights add nothing: its output is the
base model's, and it still shares batches with the brand adapters' requests.

Torch-free (workers on the ``openai`` backend have no torch): a safetensors file is an 8-byte length,
a JSON header (names, dtypes, shapes, byte offsets) and the raw bytes, so the twin is the adapter's own
header followed by zero bytes, with the adapter's ``adapter_config.json``. Twins depend only on the
shapes and the config, so adapters of one base model and one LoRA configuration share one.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from workers.contract import AdapterRef

WEIGHTS = "adapter_model.safetensors"
CONFIG = "adapter_config.json"
NAME_PREFIX = "loom-zero-"
_CHUNK = 1 << 20


def zero_twin(adapter_dir: str | Path, root: str | Path) -> AdapterRef:
    """The zero twin of the peft adapter in ``adapter_dir``, written once under ``root`` (atomically)."""
    adapter_dir, root = Path(adapter_dir), Path(root)
    with (adapter_dir / WEIGHTS).open("rb") as source:
        length = int.from_bytes(source.read(8), "little")
        header = source.read(length)
    tensors = {k: v for k, v in json.loads(header).items() if k != "__metadata__"}
    size = max((int(t["data_offsets"][1]) for t in tensors.values()), default=0)
    config = (adapter_dir / CONFIG).read_bytes()
    key = hashlib.sha256(header + b"\0" + config).hexdigest()[:16]
    folder = root / key
    twin = AdapterRef(name=f"{NAME_PREFIX}{key}", path=str(folder))
    if (folder / WEIGHTS).is_file() and (folder / CONFIG).is_file():
        return twin
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=root))
    try:
        with (staging / WEIGHTS).open("wb") as out:
            out.write(length.to_bytes(8, "little"))
            out.write(header)
            zeros = bytes(_CHUNK)
            for start in range(0, size, _CHUNK):
                out.write(zeros[: min(_CHUNK, size - start)])
        (staging / CONFIG).write_bytes(config)
        # mkdtemp makes it 0700, which would hide it from a server running as another user; zeros are no secret.
        os.chmod(staging, 0o755)  # noqa: S103
        try:
            staging.rename(folder)
        except OSError:  # another worker wrote the same twin first
            if not (folder / WEIGHTS).is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return twin
