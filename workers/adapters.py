"""Brand adapters (LoRA) served on the in-process engine's base model, several at once.

The base model is loaded once (``workers.runtime``); the first request with an adapter wraps it in a
``peft.PeftModel`` (in place: its linear layers gain LoRA branches, the base weights are shared),
and each adapter is added with ``load_adapter`` under its own name. A forward pass then takes one
adapter name per row (``adapter_names``, ``"__base__"`` for none): peft's mixed-batch inference runs
the base layers on the whole batch and each LoRA branch on its own rows, so rows with different
adapters and rows without one share every forward pass and the KV cache.

The layers' own "active adapter" is kept empty, so a forward without ``adapter_names`` (anything that
calls the model directly) is still the base model; the engine always passes names once wrapped.

At most ``LOOM_MAX_ADAPTERS`` stay loaded, least recently used out (``delete_adapter``), but never one
a running row still uses: then the set grows past the bound until those rows finish. Used by the
engine thread only (like the model), so there is no locking.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from workers.contract import AdapterRef

logger = logging.getLogger(__name__)

#: peft's name for "no adapter on this row" in ``adapter_names``.
BASE = "__base__"
#: The weights file ``save_pretrained`` writes (safetensors, the default; never pickles).
WEIGHTS = "adapter_model.safetensors"


class AdapterLoadError(RuntimeError):
    """An adapter could not be loaded: the request that asked for it fails, not its batch."""


def key_of(adapter: AdapterRef | None) -> str:
    """The row's name in ``adapter_names``: the adapter's (peft module keys may not contain dots)."""
    return BASE if adapter is None else adapter.name.replace(".", "_")


class AdapterSet:
    """The adapters loaded on one base model, and the ``PeftModel`` that serves them."""

    def __init__(self, model: Any, *, max_loaded: int) -> None:
        self.base = model
        self.max_loaded = max_loaded
        self.peft: Any = None  # the PeftModel around ``base``, made by the first load
        self._loaded: OrderedDict[str, str] = OrderedDict()  # key -> path, least recently used first
        self.loads = self.evictions = 0

    @property
    def loaded(self) -> list[str]:
        return list(self._loaded)

    def ensure(self, adapter: AdapterRef, *, in_use: Iterable[str] = ()) -> str:
        """Load ``adapter`` if needed (evicting unused ones past the bound); its key for ``adapter_names``."""
        key = key_of(adapter)
        if self._loaded.get(key) == adapter.path:
            self._loaded.move_to_end(key)
            return key
        busy = set(in_use)
        if key in self._loaded:  # same name, other files: only an operator moving folders does this
            if key in busy:
                raise AdapterLoadError(f"adapter {adapter.name} is in use from {self._loaded[key]}")
            self._delete(key)
        self._evict(busy)
        self._load(key, adapter)
        return key

    def forward(self, keys: list[str], **kwargs: Any) -> Any:
        """One forward pass of the base model with each row's adapter (``BASE`` for none)."""
        if self.peft is None:
            return self.base(**kwargs)
        return self.peft(adapter_names=keys, **kwargs)

    def _load(self, key: str, adapter: AdapterRef) -> None:
        path = Path(adapter.path)
        # Checked before peft touches the model: wrapping it injects LoRA layers in place.
        missing = [name for name in ("adapter_config.json", WEIGHTS) if not (path / name).is_file()]
        if missing:
            raise AdapterLoadError(f"adapter {adapter.name}: {', '.join(missing)} missing in {path}")
        try:
            from peft import PeftModel  # heavy: loaded only by a worker that serves an adapter

            if self.peft is None:
                self.peft = PeftModel.from_pretrained(self.base, str(path), adapter_name=key, is_trainable=False)
                self.peft.eval()
            else:
                self.peft.load_adapter(str(path), adapter_name=key, is_trainable=False)
        except Exception as exc:
            self._forget_partial(key)
            raise AdapterLoadError(f"adapter {adapter.name} could not be loaded from {path}: {exc}") from exc
        self._loaded[key] = adapter.path
        self.loads += 1
        self.peft.set_adapter(key)  # the model level needs a loaded one (see _delete); rows name theirs
        self._base_by_default()
        logger.info("loaded brand adapter %s from %s (%d loaded)", adapter.name, path, len(self._loaded))

    def _evict(self, busy: set[str]) -> None:
        for key in list(self._loaded):
            if len(self._loaded) < self.max_loaded:
                return
            if key not in busy:
                self._delete(key)
                self.evictions += 1

    def _delete(self, key: str) -> None:
        del self._loaded[key]
        if self._loaded:
            # peft keeps a valid active adapter at the model level (its forward reads its config);
            # which one does not matter, rows name theirs.
            self.peft.set_adapter(next(iter(self._loaded)))
        self.peft.delete_adapter(key)
        self._base_by_default()

    def _forget_partial(self, key: str) -> None:
        """Undo what a failed load left behind, so the model serves as before."""
        if self.peft is None or key not in getattr(self.peft, "peft_config", {}):
            return
        try:
            if self._loaded:
                self.peft.set_adapter(next(iter(self._loaded)))
                self.peft.delete_adapter(key)
        except Exception:  # the adapter's layers may be half made; it is never named by a row
            logger.exception("could not remove the partly loaded adapter %s", key)
        self._base_by_default()

    def _base_by_default(self) -> None:
        """Empty every LoRA layer's active adapters: a forward without ``adapter_names`` is the base model."""
        if self.peft is None:
            return
        from peft.tuners.tuners_utils import BaseTunerLayer  # as above

        for module in self.peft.modules():
            if isinstance(module, BaseTunerLayer):
                module.set_adapter([])
