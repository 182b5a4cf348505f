"""Reporting NoC runs: one plain-text table, a JSON file, and a convergence plot."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Sequence

from .noc import MIOU_CLICKS, FolderResult


@dataclass
class Run:
    """One model evaluated on one dataset folder."""

    model: str
    dataset: str
    result: FolderResult
    dataset_path: str = ""

    def to_dict(self) -> dict:
        return {
            "model": self.model,
            "dataset": self.dataset,
            "dataset_path": self.dataset_path,
            "metrics": self.result.metrics.to_dict(),
            "per_sample": [s.to_dict() for s in self.result.per_sample],
        }


def _metrics(run: Run | dict) -> dict:
    return run.result.metrics.to_dict() if isinstance(run, Run) else run["metrics"]


def _field(run: Run | dict, key: str) -> Any:
    return getattr(run, key) if isinstance(run, Run) else run[key]


def _fmt(v: float | None, digits: int, scale: float = 1.0) -> str:
    return "-" if v is None else f"{v * scale:.{digits}f}"


TABLE_COLUMNS = (
    ["model", "dataset", "N", "NoC@85", "NoC@90", "%>=85", "%>=90"]
    + [f"mIoU@{k}" for k in MIOU_CLICKS]
    + ["SPC p50 ms", "SPC p95 ms", "enc s/img", "PIE 1e-7"]
)


def table_rows(runs: Sequence[Run | dict]) -> list[list[str]]:
    """The table's cells, one row per run (accepts ``Run`` objects or their JSON dicts)."""
    rows = []
    for run in runs:
        m = _metrics(run)
        miou = m["miou_at"]
        rows.append(
            [
                str(_field(run, "model")),
                str(_field(run, "dataset")),
                str(m["samples"]),
                _fmt(m["noc85"], 2),
                _fmt(m["noc90"], 2),
                _fmt(m["reached85"], 1, 100),
                _fmt(m["reached90"], 1, 100),
            ]
            + [_fmt(miou.get(str(k)), 3) for k in MIOU_CLICKS]
            + [
                _fmt(m["spc_p50"], 1, 1000),
                _fmt(m["spc_p95"], 1, 1000),
                _fmt(m["encoder_mean"], 3),
                _fmt(m["pie"], 2),
            ]
        )
    return rows


def format_table(runs: Sequence[Run | dict]) -> str:
    """A plain-text table: one row per model x dataset. NoC is the mean click number that
    first reaches IoU 0.85 / 0.90 (max clicks if never), %>= the share of samples reaching
    it, mIoU@k the mean IoU after k clicks, SPC the decoder seconds per click (p50/p95, ms),
    enc the mean image-encoder seconds per image, PIE seconds per click per pixel in 1e-7."""
    rows = [list(TABLE_COLUMNS)] + table_rows(runs)
    widths = [max(len(r[i]) for r in rows) for i in range(len(TABLE_COLUMNS))]
    lines = []
    for j, r in enumerate(rows):
        cells = [c.ljust(widths[i]) if i < 2 else c.rjust(widths[i]) for i, c in enumerate(r)]
        lines.append("  ".join(cells).rstrip())
        if j == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


MARKDOWN_COLUMNS = ("model", "dataset", "N", "NoC@85", "NoC@90", "mIoU@1", "mIoU@5", "SPC p50 ms", "SPC p95 ms")


def format_markdown(runs: Sequence[Run | dict]) -> str:
    """The README's table: NoC@85/90, mIoU@1/@5 and decoder ms per click, one row per run."""
    idx = [TABLE_COLUMNS.index(c) for c in MARKDOWN_COLUMNS]
    lines = ["| " + " | ".join(MARKDOWN_COLUMNS) + " |", "|" + "|".join(["---"] * 2 + ["---:"] * (len(idx) - 2)) + "|"]
    for row in table_rows(runs):
        lines.append("| " + " | ".join(row[i] for i in idx) + " |")
    return "\n".join(lines)


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _git_commit() -> str | None:
    root = Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def environment(**settings: Any) -> dict:
    """Where and how the numbers were measured (versions, CPU, settings passed in)."""
    from .. import __version__

    try:
        import onnxruntime as ort

        providers = ort.get_available_providers()
    except ImportError:  # pragma: no cover
        providers = None
    return {
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model_export": __version__,
        "git_commit": _git_commit(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor() or None,
        "cpu_count": os.cpu_count(),
        "packages": {d: _version(d) for d in ("numpy", "opencv-python-headless", "onnxruntime", "torch")},
        "onnxruntime_providers": providers,
        "settings": settings,
    }


def runs_to_json(runs: Sequence[Run], env: dict | None = None) -> dict:
    return {"runs": [r.to_dict() for r in runs], "environment": env if env is not None else environment()}


def write_json(runs: Sequence[Run], path: str | Path, env: dict | None = None) -> Path:
    """Write ``{"runs": [...], "environment": {...}}`` to ``path`` (parents created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(runs_to_json(runs, env), indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def plot_convergence(runs: Sequence[Run | dict], path: str | Path) -> Path:
    """Mean IoU against click number: one panel per dataset, one line per model (PNG etc.)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    datasets: list[str] = []
    for r in runs:
        if _field(r, "dataset") not in datasets:
            datasets.append(_field(r, "dataset"))
    if not datasets:
        raise ValueError("no runs to plot")
    fig = Figure(figsize=(4.5 * len(datasets), 3.6))
    FigureCanvasAgg(fig)  # Agg backend, no pyplot state
    axes = fig.subplots(1, len(datasets), squeeze=False, sharey=True)
    for ax, ds in zip(axes[0], datasets):
        for r in runs:
            if _field(r, "dataset") != ds:
                continue
            curve = _metrics(r)["miou_curve"]
            ax.plot(range(1, len(curve) + 1), curve, marker=".", label=str(_field(r, "model")))
        for t in (0.85, 0.90):
            ax.axhline(t, color="grey", linestyle=":", linewidth=0.8)
        ax.set_title(ds)
        ax.set_xlabel("click")
        ax.set_ylim(0.0, 1.0)
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right", fontsize="small")
    axes[0][0].set_ylabel("mean IoU")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return path
