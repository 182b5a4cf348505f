"""Combine the runs of several ``interformer eval --json`` files into one report.

    python -m model_export.evaluation.merge new.json old.json:default=interformer-tinyvit-v1 \\
        --keep-models sam-decoder,grabcut,interformer-tinyvit-v1 --out docs/results/eval.json \\
        --plot docs/img/convergence.png

Used when a new model is evaluated and its peers' results already exist from an earlier run of
the same harness on the same data (the simulated-click protocol is deterministic, so their NoC
and mIoU do not change; only their seconds per click were measured at another time). Each input
may rename models (``file.json:old=new[,old2=new2]``); ``--keep-models`` selects models from the
files after the first (the first file's runs are always kept). The output records every source
file's environment under ``sources``; the markdown table is printed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .report import format_markdown, plot_convergence


def _parse_source(text: str) -> tuple[Path, dict[str, str]]:
    path, _, ren = text.partition(":")
    renames = {}
    for part in filter(None, ren.split(",")):
        old, sep, new = part.partition("=")
        if not sep or not old or not new:
            raise ValueError(f"bad rename {part!r} in {text!r} (expected old=new)")
        renames[old] = new
    return Path(path), renames


def merge(sources: list[tuple[Path, dict[str, str]]], keep_models: set[str] | None = None) -> dict:
    runs, envs, seen = [], [], set()
    for i, (path, renames) in enumerate(sources):
        data = json.loads(path.read_text("utf-8"))
        envs.append({"file": str(path), "renames": renames, "environment": data.get("environment")})
        for r in data["runs"]:
            r = dict(r, model=renames.get(r["model"], r["model"]))
            if i > 0 and keep_models is not None and r["model"] not in keep_models:
                continue
            key = (r["model"], r["dataset"])
            if key in seen:
                raise ValueError(f"{r['model']} on {r['dataset']} appears in more than one source")
            seen.add(key)
            runs.append(r)
    return {"runs": runs, "sources": envs}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("sources", nargs="+", help="eval JSON files, optionally with :old=new renames")
    ap.add_argument("--keep-models", default=None, help="models to take from the files after the first")
    ap.add_argument("--out", required=True)
    ap.add_argument("--plot", default=None)
    a = ap.parse_args(argv)
    try:
        sources = [_parse_source(s) for s in a.sources]
        for p, _ in sources:
            if not p.is_file():
                raise ValueError(f"{p} does not exist")
        keep = set(a.keep_models.split(",")) if a.keep_models else None
        merged = merge(sources, keep)
    except (ValueError, KeyError, json.JSONDecodeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(merged, indent=1), "utf-8")
    if a.plot:
        plot_convergence(merged["runs"], a.plot)
    print(format_markdown(merged["runs"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
