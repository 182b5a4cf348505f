"""Quality / size study of the pyramid quantization schemes and of the decoder weight variants.

    python -m model_export.benchmarks.pyramid_quality --export DIR \\
        --data /work/shared/data/eval/grabcut /work/shared/data/eval/berkeley \\
        --json out.json [--max-samples N [N ...]] [--schemes S [S ...]] [--brotli auto|node|off]

``DIR`` is an ``interformer export`` folder (``decoder.json``, ``decoder.onnx``, ``pyramid.onnx``,
optionally ``decoder.fp16.onnx``, ``decoder.int8.onnx``, ``decoder.int8_inputs.onnx``).

Pyramid schemes (``pyramid_format``). For every image the fp32 pyramid is computed once (the
TinyViT embedding is kept in memory for the images the decoder-variant study reuses). For every
sample (image + mask) the fp32 pyramid runs the click protocol: ``--clicks`` (5) clicks, each
placed by ``clicks.next_click`` (deepest-point rule) against the ground truth and the fp32 mask.
Every scheme encodes the pyramid with ``encode_pyramid`` (the bytes that would be shipped),
decodes it with ``decode_pyramid`` and replays the same clicks with the fp32 decoder on its own
click map (updated from its own predictions, as in the browser); after every click its mask is
compared with the fp32 mask (IoU; both empty counts as 1). Schemes that differ only by the
``+delta`` filter decode to identical values, so their decoder run is shared.

A scheme is one spec for all levels (``int4+bias+clip=99.9``) or a per-level mix, F1 first,
separated by ``/`` (``int4+bias/int8/int8/int8``: F1 int4, F2..F4 int8).

Sizes per image: raw file bytes, gzip -9 (Python's zlib) and brotli (the ``brotli`` module if it
can be imported; ``--brotli node`` uses Node's built-in zlib instead; else skipped and said so).
The TinyViT canvas has longest side 512, so a non-square image has a smaller canvas than
512 x 512: "512-eq" sizes are each image's bytes scaled by 512*512 / (canvas_h * canvas_w) (the
payload is proportional to the canvas area; the header is ~1 kB), and the actual means and the
canvas sizes are reported too. The wire size used for the thresholds is min(raw, gzip -9) at
512-eq (what the Python server can send with ``Content-Encoding: gzip``); brotli is reported
beside it. A scheme passes when its mean 512-eq wire size is <= ``--max-bytes`` (500,000: 0.5 MB
in decimal units) and its mean IoU against fp32 is >= ``--min-iou`` (0.99) on EVERY data set.
The recommended scheme is the smallest passing one on the wire (``recommend``).

Decoder weight variants: ``onnx_decoder.compare_variants`` over the GrabCut folder (the first
``--data`` folder whose name contains "grabcut", else the first) with decoder.onnx (the
reference), decoder.fp16.onnx and decoder.int8.onnx, all on the fp32 pyramid; a variant is kept
when its mean IoU against fp32 is >= ``--min-variant-iou`` (0.995). ``decoder.int8_inputs.onnx``
is fed the int8 pyramid as stored (codes, scales, zero points) and compared with the fp32
decoder on the dequantized int8 pyramid, same clicks, on every data set: the masks must be
identical.

Eval sets are used for reporting only (choosing a scheme by a quality threshold, no training).
Prints markdown tables and writes JSON (``--json``).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import math
import os
import platform
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

__all__ = [
    "DEFAULT_SCHEMES",
    "QuantizedInputSession",
    "check_passes",
    "main",
    "markdown_report",
    "parse_scheme",
    "recommend",
    "run_study",
    "scheme_label",
]

DEFAULT_SCHEMES: tuple[str, ...] = (
    "f32",
    "f16",
    "int8",
    "int8+delta",
    "int8+bias",
    "int8+clip=99.99",
    "int8+clip=99.9",
    "int4",
    "int4+delta",
    "int4+bias",
    "int4+bias+delta",
    "int4+clip=99.9",
    "int4+clip=99.5",
    "int4+bias+clip=99.9",
    "int4+bias+clip=99.9+delta",
    "int4+bias+clip=99.5",
    "int4+bias/int8/int8/int8",
    "int4+bias/int4+bias/int8/int8",
    "int4+bias/int4+bias/int4+bias/int8",
    "int8/int4+bias/int4+bias/int4+bias",
)
MAX_BYTES = 500_000  # 0.5 MB (decimal) per 512 x 512 image on the wire
MIN_IOU = 0.99  # mean mask IoU vs the fp32 pyramid, on every data set
MIN_VARIANT_IOU = 0.995  # decoder weight variants vs the fp32 decoder (GrabCut)
CANVAS_512 = 512 * 512
LEVELS = 4


# ======================================================================================
# Schemes
# ======================================================================================
def parse_scheme(text: str | Sequence[str], levels: int = LEVELS) -> list[str]:
    """A scheme as a list of per-level specs (canonical strings), F1 first.

    ``"int8"`` -> 4 x ``"int8"``; ``"int4+bias/int8/int8/int8"`` -> one spec per level. Every
    spec is checked by ``pyramid_format.SchemeSpec.parse``.
    """
    from ..pyramid_format import SchemeSpec

    parts = text.split("/") if isinstance(text, str) else list(text)
    parts = [p.strip() for p in parts]
    if len(parts) == 1:
        parts = parts * levels
    if len(parts) != levels:
        raise ValueError(f"scheme {text!r}: give one spec, or {levels} separated by '/' (finest level first)")
    return [str(SchemeSpec.parse(p)) for p in parts]


def scheme_label(levels: Sequence[str]) -> str:
    """``"int8"`` when every level has the same spec, else ``"a/b/c/d"``."""
    return levels[0] if len(set(levels)) == 1 else "/".join(levels)


def _values_key(levels: Sequence[str]) -> str:
    """The scheme without the ``+delta`` filter: schemes with the same key decode to the same values."""
    from ..pyramid_format import SchemeSpec

    out = []
    for s in levels:
        spec = SchemeSpec.parse(s)
        out.append(str(SchemeSpec(spec.scheme, spec.clip, spec.bias, "none")))
    return scheme_label(out)


# ======================================================================================
# HTTP compression
# ======================================================================================
_NODE_BROTLI = r"""
const zlib = require('zlib'); const q = +process.argv[1]; let buf = Buffer.alloc(0);
process.stdin.on('data', (d) => {
  buf = Buffer.concat([buf, d]);
  while (buf.length >= 4) {
    const n = buf.readUInt32LE(0);
    if (buf.length < 4 + n) break;
    const b = buf.subarray(4, 4 + n); buf = buf.subarray(4 + n);
    const o = zlib.brotliCompressSync(b, {params: {[zlib.constants.BROTLI_PARAM_QUALITY]: q,
                                                   [zlib.constants.BROTLI_PARAM_SIZE_HINT]: n}});
    process.stdout.write(o.length + '\n');
  }
});
"""


class Compressor:
    """gzip -9 and, when available, brotli sizes of byte strings.

    ``brotli``: ``"auto"`` (the ``brotli`` Python module if importable, else none), ``"python"``
    (the module, required), ``"node"`` (Node.js's built-in zlib in one long-lived process) or
    ``"off"``. ``self.brotli_backend`` says what is used (None: skipped, ``self.note`` says why).
    """

    def __init__(self, brotli: str = "auto", quality: int = 9):
        self.quality = int(quality)
        self.brotli_backend: str | None = None
        self.note = ""
        self._mod = None
        self._proc = None
        if brotli in ("auto", "python"):
            try:
                import brotli as mod  # noqa: F401

                self._mod = mod
                self.brotli_backend = f"python brotli {getattr(mod, '__version__', '?')}, quality {self.quality}"
            except ImportError:
                if brotli == "python":
                    raise
                self.note = "brotli skipped: the Python 'brotli' module is not installed (use --brotli node)"
        elif brotli == "node":
            self._proc = subprocess.Popen(["node", "-e", _NODE_BROTLI, str(self.quality)],
                                          stdin=subprocess.PIPE, stdout=subprocess.PIPE)
            ver = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
            self.brotli_backend = f"Node.js {ver} zlib brotli, quality {self.quality}"
        elif brotli == "off":
            self.note = "brotli skipped (--brotli off)"
        else:
            raise ValueError(f"unknown brotli backend {brotli!r} (auto, python, node, off)")

    @staticmethod
    def gzip_size(data: bytes) -> int:
        return len(gzip.compress(data, compresslevel=9, mtime=0))

    def brotli_size(self, data: bytes) -> int | None:
        if self._mod is not None:
            return len(self._mod.compress(data, quality=self.quality))
        if self._proc is not None:
            self._proc.stdin.write(len(data).to_bytes(4, "little") + data)
            self._proc.stdin.flush()
            line = self._proc.stdout.readline()
            if not line:
                raise RuntimeError("the node brotli process ended")
            return int(line)
        return None

    def close(self) -> None:
        if self._proc is not None:
            self._proc.stdin.close()
            self._proc.wait(timeout=30)
            self._proc = None


# ======================================================================================
# Click sessions
# ======================================================================================
def _mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two boolean masks; both empty counts as 1."""
    union = np.count_nonzero(a | b)
    return 1.0 if union == 0 else np.count_nonzero(a & b) / union


def _replay(sess, feats, geom, clicks) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Set the pyramid and replay ``clicks``; (masks, margins) after each click."""
    sess.set_pyramid(feats, geom)
    masks, margins = [], []
    for c in clicks:
        masks.append(sess.add_click(c.x, c.y, c.positive))
        margins.append(sess.margin.copy())
    return masks, margins


def _quantized_input_session_class():
    from ..export.onnx_decoder import OnnxClickSession

    class _QuantizedInputSession(OnnxClickSession):
        """``OnnxClickSession`` for ``decoder.int8_inputs.onnx``: fed the stored int8 pyramid.

        ``set_pyramid(qlevels, geometry)`` takes ``pyramid_format.QuantizedLevel`` objects of the
        plain ``int8`` scheme (no bias); inputs ``f{i}_q``, ``f{i}_scale``, ``f{i}_zero_point``.
        """

        def __init__(self, decoder, threads: int = 1):
            super().__init__(decoder, threads)
            self.feature_names = [i.name[:-2] for i in self.session.get_inputs() if i.name.endswith("_q")]

        def set_pyramid(self, qlevels, geometry) -> None:
            from .. import clicks as cm

            feeds = {}
            for name, q in zip(self.feature_names, qlevels):
                if q.scheme != "int8" or q.bias is not None:
                    raise ValueError(f"{name}: the int8-input decoder takes the plain int8 scheme, got {q.spec}")
                feeds[f"{name}_q"] = np.ascontiguousarray(q.data[None])
                feeds[f"{name}_scale"] = np.ascontiguousarray(q.scale, dtype=np.float32)
                feeds[f"{name}_zero_point"] = np.ascontiguousarray(q.zero_point, dtype=np.int8)
            expected = {i.name for i in self.session.get_inputs()} - {"click_map"}
            if set(feeds) != expected:
                raise ValueError(f"decoder inputs {sorted(expected)} do not match the fed {sorted(feeds)}")
            self.geometry = geometry
            self.feeds = feeds
            self.m = cm.new_click_map(geometry.canvas_h, geometry.canvas_w)
            self.clicks = []
            self.margin = None

    return _QuantizedInputSession


def __getattr__(name: str):
    if name == "QuantizedInputSession":
        return _quantized_input_session_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ======================================================================================
# Pass / recommendation
# ======================================================================================
def check_passes(row: dict, datasets: Sequence[str], max_bytes: float = MAX_BYTES, min_iou: float = MIN_IOU,
                 size_key: str = "wire_bytes_512") -> tuple[bool, bool]:
    """(passes the size threshold, passes the IoU threshold on every data set) for a scheme row."""
    size = row.get(size_key)
    size_ok = size is not None and math.isfinite(size) and size <= max_bytes
    ious = [row["per_dataset"].get(d, {}).get("mean_iou_vs_fp32") for d in datasets]
    iou_ok = bool(datasets) and all(v is not None and math.isfinite(v) and v >= min_iou for v in ious)
    return size_ok, iou_ok


def recommend(rows: Sequence[dict], datasets: Sequence[str], max_bytes: float = MAX_BYTES,
              min_iou: float = MIN_IOU, size_key: str = "wire_bytes_512") -> str | None:
    """The scheme of the smallest passing row on the wire (``size_key``), or None if none passes.

    A row passes when ``row[size_key] <= max_bytes`` and ``row["per_dataset"][d]["mean_iou_vs_fp32"]
    >= min_iou`` for every data set ``d``. Ties: the higher worst-data-set mean IoU, then the name.
    """
    best = None
    for r in rows:
        if not all(check_passes(r, datasets, max_bytes, min_iou, size_key)):
            continue
        worst = min(r["per_dataset"][d]["mean_iou_vs_fp32"] for d in datasets)
        key = (r[size_key], -worst, r["scheme"])
        if best is None or key < best[0]:
            best = (key, r["scheme"])
    return None if best is None else best[1]


# ======================================================================================
# The study
# ======================================================================================
class _Stats:
    """Running lists per (scheme, data set)."""

    def __init__(self):
        self.iou: list[float] = []
        self.identical = 0
        self.gt_last: list[float] = []
        self.margin_max = 0.0  # max |margin - fp32 margin| (stride-4 logits) after any click
        self.margin_abs: list[float] = []  # mean |margin - fp32 margin| per click


def _dataset_names(dirs: Sequence[Path]) -> list[str]:
    names: list[str] = []
    for d in dirs:
        n, k = d.name or str(d), 2
        base = n
        while n in names:
            n, k = f"{base}-{k}", k + 1
        names.append(n)
    return names


def _rgb_key(rgb: np.ndarray) -> str:
    return hashlib.sha1(rgb.tobytes() + str(rgb.shape).encode()).hexdigest()


def _mean(xs) -> float | None:
    xs = list(xs)
    return float(np.mean(xs)) if xs else None


def _min(xs) -> float | None:
    xs = list(xs)
    return float(np.min(xs)) if xs else None


def run_study(
    export_dir: str | os.PathLike,
    data_dirs: Sequence[str | os.PathLike],
    schemes: Sequence[str] = DEFAULT_SCHEMES,
    max_samples: Sequence[int | None] | int | None = None,
    num_clicks: int = 5,
    threads: int = 1,
    brotli: str = "auto",
    brotli_quality: int = 9,
    max_bytes: float = MAX_BYTES,
    min_iou: float = MIN_IOU,
    min_variant_iou: float = MIN_VARIANT_IOU,
    decoder_variants: bool = True,
    quantized_inputs: bool = True,
    variants_data: str | os.PathLike | None = None,
    log: Callable[[str], None] = print,
) -> dict:
    """Run the study; returns the JSON-able result (see the module docstring)."""
    from ..clicks import iou as gt_iou
    from ..clicks import next_click
    from ..data import list_samples, load_mask, load_rgb
    from ..export.onnx_decoder import OnnxClickSession, compare_variants
    from ..export.onnx_encoder import OnnxPyramidPipeline
    from ..pyramid_format import decode_pyramid, decode_pyramid_quantized, dequantize_level, encode_pyramid

    t_start = time.perf_counter()
    export_dir = Path(export_dir)
    manifest = json.loads((export_dir / "decoder.json").read_text("utf-8"))
    data_dirs = [Path(d) for d in data_dirs]
    if not data_dirs:
        raise ValueError("give at least one data folder")
    ds_names = _dataset_names(data_dirs)
    if max_samples is None or isinstance(max_samples, int):
        max_samples = [max_samples] * len(data_dirs)
    max_samples = list(max_samples)
    if len(max_samples) == 1:
        max_samples *= len(data_dirs)
    if len(max_samples) != len(data_dirs):
        raise ValueError("give one --max-samples value, or one per --data folder")

    pipe = OnnxPyramidPipeline.from_manifest(export_dir, threads=threads)
    n_levels = len(pipe.level_names)  # 4, or 3 when the decoder derives F1 from F2
    scheme_levels = {}
    for s in schemes:
        if isinstance(s, str) and "/" in s and len(s.split("/")) != n_levels:
            log(f"note: scheme {s} names {len(s.split('/'))} levels, this model ships {n_levels}; skipped")
            continue
        lv = parse_scheme(s, n_levels)
        scheme_levels.setdefault(scheme_label(lv), lv)
    labels = list(scheme_levels)
    values_keys = {lab: _values_key(lv) for lab, lv in scheme_levels.items()}

    # which data set the decoder-variant study uses (its embeddings are kept in memory)
    if variants_data is not None:
        vdir = Path(variants_data)
    else:
        vdir = next((d for d in data_dirs if "grabcut" in d.name.lower()), data_dirs[0])
    # its sample limit: that of the first --data folder that is it (no limit if it is not among them)
    v_max = next((m for d, m in zip(data_dirs, max_samples) if d.resolve() == vdir.resolve()), None)

    ref_sess = OnnxClickSession(export_dir / "decoder.onnx", threads)
    qin_path = export_dir / "decoder.int8_inputs.onnx"
    qin_sess = None
    if quantized_inputs:
        if qin_path.is_file():
            qin_sess = _quantized_input_session_class()(qin_path, threads)
        else:
            log(f"note: {qin_path.name} not in the export; skipping the int8-input decoder check")
    comp = Compressor(brotli, brotli_quality)
    if comp.note:
        log(f"note: {comp.note}")
    meta_base = {"model_id": manifest["model"]["id"], "model_version": manifest["model"]["version"]}

    emb_cache: dict[str, np.ndarray] = {}

    def embedding(rgb: np.ndarray, keep: bool) -> np.ndarray:
        k = _rgb_key(rgb)
        if k in emb_cache:
            return emb_cache[k]
        e = pipe.encoder.encode(rgb) if pipe.kind == "tinyvit-adapter" else None
        if keep and e is not None:
            emb_cache[k] = e
        return e

    def pyramid_fn(rgb: np.ndarray, keep: bool = False):
        if pipe.kind == "tinyvit-adapter":
            return pipe.pyramid(rgb, embedding(rgb, keep)), pipe.geometry(*rgb.shape[:2])
        return pipe.pyramid_and_geometry(rgb)

    # per scheme: image-level sizes (all data sets and per data set), sample-level IoU stats
    size_rows = {lab: {"all": [], **{d: [] for d in ds_names}} for lab in labels}
    rel_rmse = {lab: [] for lab in labels}  # per image: list of per-level relative RMSE
    stats = {lab: {d: _Stats() for d in ds_names} for lab in labels}
    ref_gt = {d: [] for d in ds_names}
    qin = {d: {"clicks": 0, "identical_masks": 0, "max_abs_margin_diff": 0.0, "ious": []} for d in ds_names}
    ds_info = {}
    timing = Counter()

    for ds, ddir, mx in zip(ds_names, data_dirs, max_samples):
        samples = list_samples(ddir)
        if mx is not None:
            samples = samples[: int(mx)]
        keep = decoder_variants and ddir.resolve() == vdir.resolve()
        canvases: Counter = Counter()
        images = 0
        clicks_total = 0
        cur_key, per_image = None, None
        t_ds = time.perf_counter()
        for si, s in enumerate(samples):
            if str(s.image_path) != cur_key:
                # ---- a new image: fp32 pyramid, every scheme's bytes and decoded values -----
                t = time.perf_counter()
                rgb = load_rgb(s.image_path)
                feats, geom = pyramid_fn(rgb, keep)
                feats = [np.asarray(f, dtype=np.float32).reshape(np.shape(f)[-3:]) for f in feats]
                timing["pyramid_s"] += time.perf_counter() - t
                cur_key = str(s.image_path)
                images += 1
                canvases[f"{geom.canvas_h}x{geom.canvas_w}"] += 1
                factor = CANVAS_512 / (geom.canvas_h * geom.canvas_w)
                meta = dict(meta_base, canvas=geom)
                decoded: dict[str, list[np.ndarray]] = {}
                t = time.perf_counter()
                for lab in labels:
                    data = encode_pyramid(feats, meta, scheme_levels[lab], names=pipe.level_names,
                                          strides=pipe.level_strides)
                    raw, gz = len(data), comp.gzip_size(data)
                    br = comp.brotli_size(data)
                    row = {"raw": raw, "gzip": gz, "brotli": br, "factor": factor}
                    size_rows[lab]["all"].append(row)
                    size_rows[lab][ds].append(row)
                    vk = values_keys[lab]
                    if vk not in decoded:
                        decoded[vk] = decode_pyramid(data)[0]
                    rel_rmse[lab].append([
                        float(np.sqrt(np.mean((a.astype(np.float64) - b) ** 2)) / (float(np.std(b)) + 1e-12))
                        for a, b in zip(decoded[vk], feats)
                    ])
                timing["encode_compress_s"] += time.perf_counter() - t
                int8_q = None
                if qin_sess is not None:
                    int8_q = decode_pyramid_quantized(encode_pyramid(feats, meta, "int8", names=pipe.level_names,
                                                                     strides=pipe.level_strides))[0]
                    if "int8" not in decoded:
                        decoded["int8"] = [dequantize_level(q) for q in int8_q]  # = decode_pyramid's
                per_image = (feats, geom, decoded, int8_q)
            feats, geom, decoded, int8_q = per_image

            # ---- the fp32 reference run: clicks from the ground truth and the fp32 mask -------
            t = time.perf_counter()
            gt = load_mask(s.mask_path)
            ref_sess.set_pyramid(feats, geom)
            pred = np.zeros(gt.shape, dtype=bool)
            ref_masks, ref_margins = [], []
            for _ in range(num_clicks):
                c = next_click(pred, gt, ref_sess.clicks)
                if c is None:
                    break
                pred = ref_sess.add_click(c.x, c.y, c.positive)
                ref_masks.append(pred)
                ref_margins.append(ref_sess.margin.copy())
            clicks = list(ref_sess.clicks)
            clicks_total += len(clicks)
            ref_gt[ds].append(gt_iou(ref_sess.mask, gt))

            # ---- every distinct decoded pyramid replays the clicks ---------------------------
            replays: dict[str, tuple] = {}
            for lab in labels:
                vk = values_keys[lab]
                if vk not in replays:
                    replays[vk] = _replay(ref_sess, decoded[vk], geom, clicks)
                masks, margins = replays[vk]
                st = stats[lab][ds]
                for mk, rm, mg, rmg in zip(masks, ref_masks, margins, ref_margins):
                    st.iou.append(_mask_iou(mk, rm))
                    st.identical += int(np.array_equal(mk, rm))
                    d = np.abs(mg.astype(np.float64) - rmg)
                    st.margin_max = max(st.margin_max, float(d.max()))
                    st.margin_abs.append(float(d.mean()))
                st.gt_last.append(gt_iou(masks[-1], gt) if masks else gt_iou(np.zeros(gt.shape, bool), gt))

            # ---- decoder.int8_inputs.onnx on the stored int8 pyramid vs fp32 on its dequantization
            if qin_sess is not None:
                if "int8" not in replays:
                    replays["int8"] = _replay(ref_sess, decoded["int8"], geom, clicks)
                r_masks, r_margins = replays["int8"]
                q_masks, q_margins = _replay(qin_sess, int8_q, geom, clicks)
                q = qin[ds]
                for a, b, ma, mb in zip(q_masks, r_masks, q_margins, r_margins):
                    q["clicks"] += 1
                    q["identical_masks"] += int(np.array_equal(a, b))
                    q["ious"].append(_mask_iou(a, b))
                    q["max_abs_margin_diff"] = max(q["max_abs_margin_diff"], float(np.abs(ma - mb).max()))
            timing["decoder_s"] += time.perf_counter() - t
            if (si + 1) % 5 == 0 or si + 1 == len(samples):
                el = time.perf_counter() - t_ds
                log(f"[{ds}] {si + 1}/{len(samples)} samples, {images} images, {el:.0f} s "
                    f"({el / (si + 1):.1f} s/sample)")
        ds_info[ds] = {"path": str(ddir), "samples": len(samples), "images": images, "clicks": clicks_total,
                       "max_samples": mx, "canvas_sizes": dict(canvases),
                       "fp32_mean_iou_vs_gt_last_click": _mean(ref_gt[ds])}

    # ---- per-scheme summary -------------------------------------------------------------------
    rows = []
    for lab in labels:
        def agg(rs, key, eq):
            vals = [r[key] * (r["factor"] if eq else 1.0) for r in rs if r[key] is not None]
            return _mean(vals) if len(vals) == len(rs) else None

        allr = size_rows[lab]["all"]
        row = {
            "scheme": lab,
            "levels": scheme_levels[lab],
            "bytes_mean": agg(allr, "raw", False),
            "gzip_mean": agg(allr, "gzip", False),
            "brotli_mean": agg(allr, "brotli", False),
            "bytes_512": agg(allr, "raw", True),
            "gzip_512": agg(allr, "gzip", True),
            "brotli_512": agg(allr, "brotli", True),
            "bytes_512_max": max((r["raw"] * r["factor"] for r in allr), default=None),
            "gzip_512_max": max((r["gzip"] * r["factor"] for r in allr), default=None),
            "rel_rmse_per_level": [float(v) for v in np.mean(rel_rmse[lab], axis=0)] if rel_rmse[lab] else None,
            "per_dataset": {},
        }
        row["wire_bytes_512"] = (None if row["bytes_512"] is None else
                                 min(row["bytes_512"], row["gzip_512"]))
        row["wire_bytes_512_with_brotli"] = (None if row["brotli_512"] is None else
                                             min(row["wire_bytes_512"], row["brotli_512"]))
        all_iou = []
        for ds in ds_names:
            st = stats[lab][ds]
            rs = size_rows[lab][ds]
            all_iou += st.iou
            row["per_dataset"][ds] = {
                "mean_iou_vs_fp32": _mean(st.iou),
                "min_iou_vs_fp32": _min(st.iou),
                "clicks": len(st.iou),
                "identical_masks": st.identical,
                "max_abs_margin_diff": st.margin_max,
                "mean_abs_margin_diff": _mean(st.margin_abs),
                "mean_iou_vs_gt_last_click": _mean(st.gt_last),
                "bytes_mean": agg(rs, "raw", False),
                "gzip_mean": agg(rs, "gzip", False),
                "brotli_mean": agg(rs, "brotli", False),
                "gzip_512": agg(rs, "gzip", True),
            }
        row["mean_iou_vs_fp32"] = _mean(all_iou)
        row["min_iou_vs_fp32"] = _min(all_iou)
        size_ok, iou_ok = check_passes(row, ds_names, max_bytes, min_iou)
        row.update(passes_size=size_ok, passes_iou=iou_ok, passes=size_ok and iou_ok)
        if row["wire_bytes_512_with_brotli"] is not None:
            row["passes_with_brotli"] = all(check_passes(row, ds_names, max_bytes, min_iou,
                                                         "wire_bytes_512_with_brotli"))
        rows.append(row)
    comp.close()

    result = {
        "export": str(export_dir),
        "model": manifest["model"],
        "checkpoint": manifest.get("checkpoint"),
        "num_clicks": num_clicks,
        "threads": threads,
        "host": platform.node(),
        "datasets": ds_info,
        "thresholds": {"max_wire_bytes_512": max_bytes, "min_mean_iou_vs_fp32": min_iou,
                       "min_variant_iou": min_variant_iou,
                       "wire": "min(raw, gzip -9) of the file, scaled to a 512x512 canvas, mean over images; "
                               "IoU threshold on every data set"},
        "compression": {"gzip": "Python gzip, compresslevel 9, mtime 0", "brotli": comp.brotli_backend,
                        "note": comp.note or None},
        "schemes": rows,
        "recommended": recommend(rows, ds_names, max_bytes, min_iou),
        "recommended_with_brotli": (recommend(rows, ds_names, max_bytes, min_iou, "wire_bytes_512_with_brotli")
                                    if comp.brotli_backend else None),
    }
    if qin_sess is not None:
        result["quantized_inputs"] = {
            "file": qin_path.name,
            "bytes": qin_path.stat().st_size,
            "inputs": [i.name for i in qin_sess.session.get_inputs()],
            "reference": "decoder.onnx on the dequantized 'int8' pyramid, same clicks",
            "per_dataset": {
                d: {"clicks": v["clicks"], "identical_masks": v["identical_masks"],
                    "mean_iou": _mean(v["ious"]), "max_abs_margin_diff": v["max_abs_margin_diff"],
                    "same_masks": v["clicks"] > 0 and v["identical_masks"] == v["clicks"]}
                for d, v in qin.items()
            },
        }

    # ---- decoder weight variants (compare_variants, fp32 pyramid, GrabCut) --------------------
    if decoder_variants:
        t = time.perf_counter()
        decs = {"fp32": export_dir / "decoder.onnx"}
        for k, f in (("fp16", "decoder.fp16.onnx"), ("int8", "decoder.int8.onnx")):
            if (export_dir / f).is_file():
                decs[k] = export_dir / f
        log(f"decoder variants {sorted(decs)} on {vdir} ...")
        cv = compare_variants(decs, lambda rgb: pyramid_fn(rgb, True), vdir, num_clicks=num_clicks,
                              reference="fp32", max_samples=v_max, threads=threads)
        for k, v in cv["variants"].items():
            v["gzip_bytes"] = Compressor.gzip_size(Path(v["file"]).read_bytes())
            v["keep"] = k == "fp32" or v["mean_iou_vs_reference"] >= min_variant_iou
        cv["data"] = str(vdir)
        cv["threshold"] = min_variant_iou
        result["decoder_variants"] = cv
        timing["decoder_variants_s"] += time.perf_counter() - t
    emb_cache.clear()
    result["seconds"] = {k: round(v, 1) for k, v in timing.items()} | {
        "total": round(time.perf_counter() - t_start, 1)}
    return result


# ======================================================================================
# Report
# ======================================================================================
def _kb(v: float | None) -> str:
    return "–" if v is None else f"{v / 1000:,.1f}"


def _f(v: float | None, nd: int = 4) -> str:
    return "–" if v is None else f"{v:.{nd}f}"


def markdown_report(result: dict) -> str:
    """The markdown tables of a ``run_study`` result."""
    ds = list(result["datasets"])
    th = result["thresholds"]
    rec = result.get("recommended")
    out = []
    info = ", ".join(f"{d}: {v['samples']} samples / {v['images']} images / {v['clicks']} clicks, canvases "
                     + ", ".join(f"{k} x{n}" for k, n in sorted(v["canvas_sizes"].items(), key=lambda kv: -kv[1]))
                     for d, v in result["datasets"].items())
    out.append(f"Export `{result['export']}` (model {result['model']['id']} {result['model']['version']}); "
               f"{result['num_clicks']}-click sequences; {info}.")
    br = result["compression"]["brotli"] or (result["compression"]["note"] or "brotli skipped")
    out.append(f"Sizes in kB (1000 bytes) per image scaled to a 512x512 canvas (actual means in the JSON); "
               f"wire = min(raw, gzip -9); brotli: {br}. Pass: wire <= {th['max_wire_bytes_512'] / 1e6:g} MB "
               f"and mean IoU vs fp32 >= {th['min_mean_iou_vs_fp32']} on every data set.")
    out.append("")
    head = ["scheme", "raw kB (actual)", "raw kB 512²", "gzip kB 512²", "brotli kB 512²"]
    head += [f"mean IoU {d}" for d in ds] + ["min IoU", "IoU vs GT @last " + "/".join(ds), "≤0.5 MB", "≥0.99",
                                             "pass"]
    out.append("| " + " | ".join(head) + " |")
    out.append("|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|")
    for r in result["schemes"]:
        name = f"**{r['scheme']}** ★" if r["scheme"] == rec else f"`{r['scheme']}`"
        cells = [name, _kb(r["bytes_mean"]), _kb(r["bytes_512"]), _kb(r["gzip_512"]), _kb(r["brotli_512"])]
        cells += [_f(r["per_dataset"][d]["mean_iou_vs_fp32"]) for d in ds]
        cells += [_f(r["min_iou_vs_fp32"]),
                  " / ".join(_f(r["per_dataset"][d]["mean_iou_vs_gt_last_click"], 3) for d in ds),
                  "yes" if r["passes_size"] else "no", "yes" if r["passes_iou"] else "no",
                  "**yes**" if r["passes"] else "no"]
        out.append("| " + " | ".join(cells) + " |")
    fp = " / ".join(_f(result["datasets"][d]["fp32_mean_iou_vs_gt_last_click"], 3) for d in ds)
    out.append("")
    out.append(f"fp32 reference IoU vs GT after the last click ({'/'.join(ds)}): {fp}.")
    out.append(f"Recommended (smallest passing on the wire): **{rec or 'none passes'}**"
               + (f"; counting brotli: **{result.get('recommended_with_brotli') or 'none'}**"
                  if result["compression"]["brotli"] else "") + ".")

    q = result.get("quantized_inputs")
    if q:
        out.append("")
        out.append(f"`{q['file']}` ({q['bytes'] / 1e6:.2f} MB) fed the stored int8 pyramid vs `decoder.onnx` on "
                   "the dequantized int8 pyramid, same clicks:")
        out.append("")
        out.append("| data set | clicks | identical masks | mean IoU | max abs margin diff | same masks |")
        out.append("|---|---:|---:|---:|---:|---|")
        for d, v in q["per_dataset"].items():
            out.append(f"| {d} | {v['clicks']} | {v['identical_masks']} | {_f(v['mean_iou'], 6)} | "
                       f"{v['max_abs_margin_diff']:.3g} | {'yes' if v['same_masks'] else '**no**'} |")
    cv = result.get("decoder_variants")
    if cv:
        out.append("")
        out.append(f"Decoder weight variants on {Path(cv['data']).name} ({cv['samples']} samples, {cv['clicks']} "
                   f"clicks), fp32 pyramid; keep = mean IoU vs fp32 >= {cv['threshold']}:")
        out.append("")
        out.append("| variant | file | MB | gzip MB | mean IoU vs fp32 | min IoU | identical masks | "
                   "IoU vs GT @last | keep |")
        out.append("|---|---|---:|---:|---:|---:|---:|---:|---|")
        for k, v in cv["variants"].items():
            out.append(f"| {k} | `{Path(v['file']).name}` | {v['bytes'] / 1e6:.2f} | {v['gzip_bytes'] / 1e6:.2f} | "
                       f"{_f(v['mean_iou_vs_reference'])} | {_f(v['min_iou_vs_reference'])} | "
                       f"{v['identical_masks']}/{cv['clicks']} | {_f(v['mean_iou_vs_gt_last_click'], 3)} | "
                       f"{'yes' if v['keep'] else 'no'} |")
    return "\n".join(out)


# ======================================================================================
# CLI
# ======================================================================================
def _max_samples_arg(v: str) -> int | None:
    if v.lower() in ("all", "none", "0"):
        return None
    n = int(v)
    if n < 0:
        raise argparse.ArgumentTypeError("max samples must be >= 0 (0 or 'all': no limit)")
    return n


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m model_export.benchmarks.pyramid_quality", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--export", required=True, help="export folder (decoder.json, decoder*.onnx, pyramid.onnx)")
    ap.add_argument("--data", nargs="+", required=True, help="images/ + masks/ folders (e.g. grabcut berkeley)")
    ap.add_argument("--json", default=None, help="write the result here")
    ap.add_argument("--max-samples", nargs="+", type=_max_samples_arg, default=[None],
                    help="samples per data set: one value for all, or one per --data ('all' or 0: no limit)")
    ap.add_argument("--schemes", nargs="+", default=list(DEFAULT_SCHEMES),
                    help="pyramid schemes; a per-level mix is 4 specs separated by '/', F1 first "
                         "(default: %(default)s)")
    ap.add_argument("--clicks", type=int, default=5, help="clicks per sample (default: %(default)s)")
    ap.add_argument("--threads", type=int, default=1, help="onnxruntime threads (default: %(default)s)")
    ap.add_argument("--brotli", choices=("auto", "python", "node", "off"), default="auto",
                    help="brotli backend: the Python module if importable (auto), Node's zlib (node), or off")
    ap.add_argument("--brotli-quality", type=int, default=9,
                    help="brotli quality 0..11 (default: %%(default)s; 11 is ~5-8%% smaller on int8/int4 pyramids "
                         "but ~15x slower)")
    ap.add_argument("--max-bytes", type=float, default=MAX_BYTES, help="wire-size threshold (default: %(default)s)")
    ap.add_argument("--min-iou", type=float, default=MIN_IOU, help="IoU threshold (default: %(default)s)")
    ap.add_argument("--min-variant-iou", type=float, default=MIN_VARIANT_IOU,
                    help="keep threshold for decoder weight variants (default: %(default)s)")
    ap.add_argument("--no-decoder-variants", action="store_true", help="skip the decoder weight variants")
    ap.add_argument("--no-quantized-inputs", action="store_true", help="skip the int8-input decoder check")
    ap.add_argument("--variants-data", default=None,
                    help="data folder of the decoder-variant study (default: the grabcut one among --data)")
    args = ap.parse_args(argv)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    result = run_study(
        args.export, args.data, schemes=args.schemes, max_samples=args.max_samples, num_clicks=args.clicks,
        threads=args.threads, brotli=args.brotli, brotli_quality=args.brotli_quality, max_bytes=args.max_bytes,
        min_iou=args.min_iou, min_variant_iou=args.min_variant_iou,
        decoder_variants=not args.no_decoder_variants, quantized_inputs=not args.no_quantized_inputs,
        variants_data=args.variants_data, log=log,
    )
    result["command"] = " ".join([Path(sys.executable).name, "-m", "model_export.benchmarks.pyramid_quality",
                                  *(argv if argv is not None else sys.argv[1:])])
    print(markdown_report(result))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2, allow_nan=False) + "\n", "utf-8")
        log(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
