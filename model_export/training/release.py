"""Turn a training run's last checkpoint into the small weights file the product ships.

Float tensors are stored as float16 (half the size; the predictor and the ONNX export load them
into float32 modules), integer buffers unchanged; the optimizer state is dropped. A ``meta``
entry records where the weights came from (run folder, iteration, config), the training wall
time summed from the run's log and the machine; the run's ``log.jsonl`` (loss, learning rate,
validation NoC) is copied next to the weights as ``<name>.log.jsonl`` for the model card.
"""

from __future__ import annotations

import json
import os
import platform
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
        "machine": _machine(),
    }
    ws = (meta["train_config"] or {}).get("warm_start")
    if ws and Path(ws).is_file():  # lineage: the run started from these weights
        prev = json.loads(torch.load(ws, map_location="cpu", weights_only=True).get("meta") or "{}")
        meta["warm_start"] = {"file": Path(ws).name, "config": prev.get("config"),
                              "iteration": prev.get("iteration"), "wall_time_s": prev.get("wall_time_s")}
        wall = prev.get("wall_time_s")
        meta["warm_start_note"] = (f"`{prev.get('config')}` after {prev.get('iteration')} iterations"
                                   + (f", {wall / 3600:.2f} h" if wall else ""))
    # lineage: a run started with --init continues released weights (their iteration count):
    # their validation records, wall time, warm start and log come first
    init = (meta["train_config"] or {}).get("init")
    prev_init: dict = {}
    prev_log_text = ""
    if init and Path(init).is_file():
        prev_init = json.loads(torch.load(init, map_location="cpu", weights_only=True).get("meta") or "{}")
        meta["init"] = {"file": Path(init).name, "iteration": prev_init.get("iteration")}
        for key in ("warm_start", "warm_start_note"):
            if key in prev_init and key not in meta:
                meta[key] = prev_init[key]
        prev_log = Path(init).with_name(Path(init).stem + ".log.jsonl")
        if prev_log.is_file():
            prev_log_text = prev_log.read_text()
    out_path.parent.mkdir(parents=True, exist_ok=True)
    log = Path(run_dir) / "log.jsonl"
    if log.exists():
        recs = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
        recs = [r for r in recs if r.get("iter", 0) <= (ck.get("iteration") or 0)]
        meta["wall_time_s"] = round(sum(float(r.get("sec", 0.0)) for r in recs) + float(prev_init.get("wall_time_s") or 0), 1)
        # a resumed run repeats the iterations after its last checkpoint: keep the latest record
        val = {r["iter"]: r for r in prev_init.get("validation") or []}
        val.update({r["iter"]: r for r in recs if "val_noc90" in r})
        meta["validation"] = sorted(val.values(), key=lambda r: r["iter"])
        log_out = out_path.with_name(out_path.stem + ".log.jsonl")
        first = min((r.get("iter", 0) for r in recs), default=0)
        kept = [ln for ln in prev_log_text.splitlines() if ln.strip() and json.loads(ln).get("iter", 0) < first]
        tmp_log = log_out.with_suffix(".tmp")
        tmp_log.write_text("".join(ln + "\n" for ln in kept) + log.read_text())
        os.replace(tmp_log, log_out)
    tmp = out_path.with_suffix(".tmp")
    torch.save({"model": sd, "meta": json.dumps(meta)}, tmp)
    os.replace(tmp, out_path)
    return meta


def _machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cpus": os.cpu_count(), "torch": torch.__version__,
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
