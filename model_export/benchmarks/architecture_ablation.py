"""What the browser-speed changes cost in NoC: trained configurations side by side (issue 3).

    python -m model_export.benchmarks.architecture_ablation \\
        --entry interformer-tinyvit-faithful=runs/abl-faithful:var/results/abl-faithful.json \\
        --entry interformer-tinyvit-v3=runs/abl-v3:var/results/abl-v3.json \\
        --json docs/results/architecture_ablation.json --md docs/results/architecture_ablation.md

Each ``--entry CONFIG=RUN_DIR:EVAL_JSON`` names a model config, the training run that produced
its weights (``interformer train --out RUN_DIR``: its ``config.json`` and ``log.jsonl``) and the
``interformer eval --json`` of those weights. Entries trained for the same number of iterations
should share one recipe (data, learning rate, seed, from scratch or continued); the script
checks that and says where they differ. Several entries per config (e.g. after 300 and after 600
iterations) show the trend.

Per entry it reports the per-click cost measured on the graph, not guessed: FLOPs of one
``InterFormer.decode`` at a 512x512 canvas (``torch.utils.flop_counter``; the decoder the browser
runs, F1 derivation included where the model derives it), the same with the split decoder's
per-image context taken out (``gflop_per_click_split``), and its parameter count; training
seconds per iteration (median of the log); and NoC@85/90, mIoU@1/@5 and seconds per click
(PyTorch, CPU) on every evaluated dataset. Prints a table, writes JSON and Markdown.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

# recipe fields that must agree for a fair comparison (config.json of each run)
RECIPE_KEYS = ("data", "iters", "batch", "crop", "lr", "weight_decay", "warmup", "seed", "init", "warm_start")


@dataclass(frozen=True)
class Entry:
    config: str
    run_dir: Path
    eval_json: Path


def parse_entry(text: str) -> Entry:
    try:
        config, rest = text.split("=", 1)
        run_dir, eval_json = rest.rsplit(":", 1)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected CONFIG=RUN_DIR:EVAL_JSON, got {text!r}") from None
    return Entry(config, Path(run_dir), Path(eval_json))


def per_click_cost(config: str, canvas: int = 512) -> dict:
    """FLOPs and parameters of the per-click part (decode) of ``config`` at a square canvas."""
    from torch.utils.flop_counter import FlopCounterMode

    from ..configs import CONFIGS, build_model

    cfg = CONFIGS[config]
    net = build_model(cfg).eval()
    strides = (4, 8, 16, 32)
    feats = [torch.zeros(1, c, canvas // s, canvas // s) for c, s in zip(cfg.neck.in_channels, strides)]
    shipped = feats[1:] if net.backbone.derives_f1 else feats
    click_map = torch.zeros(1, 1, canvas, canvas)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        net.decode(shipped, click_map)
    # the split decoder: F1 and each stage's first-block keys / values once per image (IMSA.context)
    with torch.no_grad():
        full = net.complete_pyramid(shipped)
        context = net.neck.context(full)
    split = FlopCounterMode(display=False)
    with torch.no_grad(), split:
        net.decode_head(net.neck(full, click_map, context=context))
    modules = [net.neck, net.decode_head] + ([net.backbone.up1] if net.backbone.derives_f1 else [])
    params = sum(p.numel() for m in modules for p in m.parameters())
    return {"gflop_per_click": counter.get_total_flops() / 1e9, "gflop_per_click_split": split.get_total_flops() / 1e9,
            "params_per_click_part": params, "canvas": canvas}


def training_summary(run_dir: Path) -> dict:
    cfg = json.loads((run_dir / "config.json").read_text())
    rows = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines() if line.strip()]
    if not rows:
        raise SystemExit(f"{run_dir}/log.jsonl is empty")
    secs = [r["sec"] for r in rows if "sec" in r]
    return {
        "recipe": {k: cfg.get(k) for k in RECIPE_KEYS},
        "threads": cfg.get("threads"),
        "last_iter": rows[-1]["iter"],
        "sec_per_iter_median": statistics.median(secs),
        "final_loss_mean_last_20": statistics.fmean(r["loss"] for r in rows[-20:]),
        "objects": rows[-1].get("objects"),
    }


def eval_summary(path: Path, config: str) -> dict[str, dict]:
    """{dataset: metrics} of the runs of ``path`` (the eval CLI names the run by its model)."""
    data = json.loads(path.read_text())
    out = {}
    for run in data["runs"]:
        if run["model"] not in (config, "default"):
            continue
        m = run["metrics"]
        out[run["dataset"]] = {
            "samples": m["samples"],
            "noc85": m["noc85"],
            "noc90": m["noc90"],
            "miou1": m["miou_at"]["1"],
            "miou5": m["miou_at"]["5"],
            "spc_p50": m["spc_p50"],
        }
    if not out:
        raise SystemExit(f"{path} has no run of model {config!r}")
    return out


def _comparable(key: str, value):
    # a run continued from a checkpoint names its own config's weights: compare that it was, not the path
    return ("a checkpoint" if value else None) if key in ("init", "warm_start") else value


def recipe_differences(rows: list[dict]) -> list[str]:
    """Where entries trained for the same number of iterations used different recipes."""
    diffs = []
    for last_iter in sorted({r["training"]["last_iter"] for r in rows}):
        group = [r for r in rows if r["training"]["last_iter"] == last_iter]
        for k in RECIPE_KEYS:
            values = {json.dumps(_comparable(k, r["training"]["recipe"][k])) for r in group}
            if len(values) > 1:
                diffs.append(f"{k}: " + ", ".join(f"{r['config']}={r['training']['recipe'][k]}" for r in group))
    return diffs


def markdown(rows: list[dict], diffs: list[str]) -> str:
    datasets = sorted({d for r in rows for d in r["eval"]})
    head = ["config", "iterations", "GFLOP / click (512²)", "params (per click)", "train s / iter"]
    for d in datasets:
        head += [f"{d} NoC85", f"{d} NoC90", f"{d} mIoU@1", f"{d} mIoU@5"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        c, t = r["cost"], r["training"]
        cells = [r["config"], str(t["last_iter"]), f"{c['gflop_per_click']:.2f}", f"{c['params_per_click_part'] / 1e6:.2f} M",
                 f"{t['sec_per_iter_median']:.2f}"]
        for d in datasets:
            e = r["eval"].get(d)
            cells += [f"{e['noc85']:.2f}", f"{e['noc90']:.2f}", f"{e['miou1']:.3f}", f"{e['miou5']:.3f}"] if e else ["–"] * 4
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    for last_iter in sorted({r["training"]["last_iter"] for r in rows}):
        t0 = next(r["training"] for r in rows if r["training"]["last_iter"] == last_iter)["recipe"]
        start = "continued from each config's own checkpoint" if t0["init"] else "from scratch"
        lines.append(f"- {last_iter} iterations: {start}, batch {t0['batch']}, crop {t0['crop']}, peak lr {t0['lr']}, "
                     f"warm-up {t0['warmup']}, seed {t0['seed']}, {rows[0]['training']['objects']} training objects.")
    if diffs:
        lines += ["", "**The recipes differ:** " + "; ".join(diffs)]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--entry", type=parse_entry, action="append", required=True, help="CONFIG=RUN_DIR:EVAL_JSON")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--md", type=Path, default=None)
    a = ap.parse_args(argv)
    from ..configs import CONFIGS

    for e in a.entry:
        if e.config not in CONFIGS:
            print(f"unknown config {e.config!r} (known: {', '.join(CONFIGS)})", file=sys.stderr)
            return 2
        for p in (e.run_dir / "log.jsonl", e.run_dir / "config.json", e.eval_json):
            if not p.is_file():
                print(f"missing {p}", file=sys.stderr)
                return 2
    rows = [{"config": e.config, **{k: str(v) for k, v in asdict(e).items() if k != "config"},
             "cost": per_click_cost(e.config), "training": training_summary(e.run_dir),
             "eval": eval_summary(e.eval_json, e.config)} for e in a.entry]
    diffs = recipe_differences(rows)
    md = markdown(rows, diffs)
    print(md)
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps({"rows": rows, "recipe_differences": diffs, "command": " ".join(sys.argv)}, indent=2))
    if a.md:
        a.md.parent.mkdir(parents=True, exist_ok=True)
        a.md.write_text(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
