"""Which pyramid provider a process uses: the exported model (``PyramidService``) or a factory
named ``module:attribute`` (a custom model; the tests' fake model).

    provider = load_provider(model_dir="var/models/default")          # onnxruntime, CUDA when there
    provider = load_provider(spec="fake_model:FakePyramidProvider")   # calls the factory
"""

from __future__ import annotations

import importlib
import os
from typing import Any


def load_factory(spec: str) -> Any:
    """The object ``module:attribute`` names (``ValueError`` with the reason otherwise)."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ValueError(f"--provider {spec!r}: expected module:attribute (e.g. mypkg.models:make_provider)")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ValueError(f"--provider {spec!r}: cannot import {module_name}: {e}") from None
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ValueError(f"--provider {spec!r}: {module_name} has no {attr}") from None


def load_provider(model_dir: str | os.PathLike | None = None, spec: str | None = None,
                  scheme: str | None = None, threads: int | None = None):
    """A ``PYRAMID_PROVIDER``: ``spec``'s factory called with no arguments, else the exported model
    in ``model_dir`` (``ModelNotExportedError`` when it holds none)."""
    if spec:
        provider = load_factory(spec)()
        if not callable(provider):
            raise ValueError(f"--provider {spec!r} did not give a callable rgb -> pyramid bytes")
        return provider
    from .pyramid_service import DEFAULT_SCHEME, PyramidService

    if model_dir is None:
        raise ValueError("give --model-dir (an exported model) or --provider module:factory")
    return PyramidService(model_dir, scheme=scheme or DEFAULT_SCHEME, threads=threads)
