"""Where a project's brand models live on disk, under ``settings.BRAND_ADAPTER_ROOT``:

    <project id>/v<version>/                      an adapter (adapter_model.safetensors, adapter_config.json)
    <project id>/runs/<run id>/checkpoints/       a run's resumable checkpoints (finetune.training)
    <project id>/runs/<run id>/adapter/           a run's final adapter, before it is a version

A ``BrandAdapter.path`` is relative to the root, so the root can move (a volume, a mounted bucket).
"""

from __future__ import annotations

import io
import json
import shutil
import zipfile
from pathlib import Path
from typing import Any

from django.conf import settings

from generation.models import BrandAdapter

#: The files ``peft``'s ``save_pretrained`` writes: what a customer needs to use the adapter elsewhere.
EXPORTED_FILES = ("adapter_model.safetensors", "adapter_config.json")


def root() -> Path:
    return Path(settings.BRAND_ADAPTER_ROOT)


def project_folder(project_id: Any) -> Path:
    return root() / str(project_id)


def run_folder(run: Any) -> Path:
    return project_folder(run.project_id) / "runs" / str(run.pk)


def checkpoint_folder(run: Any) -> Path:
    return run_folder(run) / "checkpoints"


def run_output_folder(run: Any) -> Path:
    return run_folder(run) / "adapter"


def adapter_relative_path(project_id: Any, version: int) -> str:
    return f"{project_id}/v{version}"


def adapter_folder(adapter: BrandAdapter) -> Path:
    return root() / adapter.path


def delete_run_files(run: Any) -> None:
    shutil.rmtree(run_folder(run), ignore_errors=True)


def delete_adapter_files(adapter: BrandAdapter) -> None:
    folder = adapter_folder(adapter).resolve()
    # A path is written by this app only, but a path that left the root must never be removed.
    if root().resolve() in folder.parents:
        shutil.rmtree(folder, ignore_errors=True)


def delete_project_files(project_id: Any) -> None:
    """Every adapter and checkpoint of a deleted project (``projects.services.delete_project``)."""
    shutil.rmtree(project_folder(project_id), ignore_errors=True)


def model_card(adapter: BrandAdapter) -> str:
    evaluation = adapter.evaluation or {}
    config = adapter.config or {}
    lines = [
        f"# Brand model v{adapter.version} of {adapter.project.name}",
        "",
        f"A LoRA adapter for `{adapter.serving_model.model}` fine-tuned on the project's own approved copy.",
        "",
        "## Use",
        "",
        "```python",
        "from peft import PeftModel",
        "from transformers import AutoModelForCausalLM, AutoTokenizer",
        "base = AutoModelForCausalLM.from_pretrained(BASE_MODEL)",
        'model = PeftModel.from_pretrained(base, "path/to/this/folder")',
        "```",
        "",
        "With vLLM: `vllm serve BASE_MODEL --enable-lora --lora-modules brand=path/to/this/folder`.",
        "",
        "## Training",
        "",
        "```json",
        json.dumps(config, indent=1, sort_keys=True, default=str),
        "```",
        "",
        "## Evaluation on the held-out split (base model vs adapter)",
        "",
        "```json",
        json.dumps({k: v for k, v in evaluation.items() if k != "samples"}, indent=1, sort_keys=True, default=str),
        "```",
        "",
        f"Beats the base model: {'yes' if adapter.beats_base else 'no'}.",
        "",
    ]
    return "\n".join(lines)


def export_zip(adapter: BrandAdapter) -> bytes:
    """The adapter's safetensors and config, with a README model card; FileNotFoundError if files are gone."""
    folder = adapter_folder(adapter)
    missing = [name for name in EXPORTED_FILES if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(", ".join(missing))
    buffer = io.BytesIO()
    prefix = f"brand-model-v{adapter.version}/"
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in EXPORTED_FILES:
            archive.write(folder / name, prefix + name)
        archive.writestr(prefix + "README.md", model_card(adapter))
    return buffer.getvalue()
