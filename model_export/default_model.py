"""The default model: which config it is and where its committed weights live."""

from __future__ import annotations

from pathlib import Path

DEFAULT_CONFIG = "interformer-tinyvit-v3"
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
DEFAULT_CHECKPOINT = WEIGHTS_DIR / "interformer-tinyvit-v3.pt"
MODEL_CARD = WEIGHTS_DIR / "MODEL_CARD.md"
