"""Turn a training run's last checkpoint into the small weights file the product ships.

Float tensors are stored as float16 (half the size; the predictor and the ONNX export load them
into float32 modules), integer buffers unchanged; the optimizer state is dropped. A ``meta``
entry records where the weights came from (run folder, iteration, config).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch


def release_weights(run_dir: Path, out_path: Path) -> dict:
    ck = torch.load(Path(run_dir) / "last.pt", map_location="cpu", weights_only=False)
    sd = {k: (v.half() if v.is_floating_point() else v) for k, v in ck["model"].items()}
    cfg_file = Path(run_dir) / "config.json"
    meta = {
        "config": ck.get("config"),
        "iteration": ck.get("iteration"),
        "train_config": json.loads(cfg_file.read_text()) if cfg_file.exists() else None,
        "dtype": "float16",
    }
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_suffix(".tmp")
    torch.save({"model": sd, "meta": json.dumps(meta)}, tmp)
    os.replace(tmp, out_path)
    return meta
