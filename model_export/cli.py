"""The ``interformer`` console command.

Subcommands import their heavy dependencies lazily, so ``interformer --help`` is instant and a
server-only install never imports torch for commands that do not need it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _add_train(sub) -> None:
    from .default_model import DEFAULT_CONFIG

    p = sub.add_parser("train", help="train the decoder side on cached encoder outputs")
    p.add_argument("data", nargs="+", help="training folders (images/+masks/, or with a COCO instances*.json)")
    p.add_argument("--config", default=DEFAULT_CONFIG, help="model config (default: %(default)s, the default model's)")
    p.add_argument("--cache", default="var/cache/tinyvit", help="embedding cache folder (default: %(default)s)")
    p.add_argument("--out", default="runs/default", help="run folder: checkpoints, log (default: %(default)s)")
    p.add_argument("--iters", type=int, default=20000)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--crop", type=int, default=320, help="training window on the 512 canvas; 0 = full canvas")
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--warmup", type=int, default=1500)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--ckpt-every", type=int, default=100)
    p.add_argument("--val-every", type=int, default=1000)
    p.add_argument("--val-samples", type=int, default=24)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--init", default=None,
                   help="start a new run from released weights (continues their iteration count)")
    p.add_argument("--warm-start", default=None,
                   help="start a new run (iteration 0) from another architecture's weights: every tensor "
                        "whose name and shape fit is copied, a slimmer module gets a slice of the old weights "
                        "(narrower MLPs, fewer pooling branches, 2x2 patch merging), the rest keeps its initialisation")
    p.set_defaults(func=_run_train)


def _run_train(a) -> int:
    from .training.trainer import TrainConfig, train

    for d in a.data:
        if not Path(d).is_dir():
            print(f"error: training folder {d} does not exist", file=sys.stderr)
            return 2
    cfg = TrainConfig(config=a.config, data=a.data, cache=a.cache, out=a.out, iters=a.iters, batch=a.batch,
                      crop=a.crop or None,
                      lr=a.lr, warmup=a.warmup, workers=a.workers, ckpt_every=a.ckpt_every,
                      val_every=a.val_every, val_samples=a.val_samples, device=a.device, threads=a.threads,
                      seed=a.seed, init=a.init, warm_start=a.warm_start)
    print("last checkpoint:", train(cfg))
    return 0


def _add_cache(sub) -> None:
    p = sub.add_parser("cache-features", help="encode training images once with the frozen TinyViT encoder")
    p.add_argument("data", nargs="+", help="folders of images/ (+ masks/)")
    p.add_argument("--cache", default="var/cache/tinyvit")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--flips", action="store_true", help="also cache horizontally flipped views")
    p.set_defaults(func=_run_cache)


def _run_cache(a) -> int:
    from .training.feature_cache import build_cache

    dirs = [Path(d) for d in a.data]
    missing = [str(d) for d in dirs if not (d / "images").is_dir()]
    if missing:
        print(f"error: no images/ folder in {', '.join(missing)}", file=sys.stderr)
        return 2
    n = build_cache(dirs, Path(a.cache), a.threads, flips=a.flips)
    print(f"{n} embeddings added to {a.cache}")
    return 0


def _add_release(sub) -> None:
    p = sub.add_parser("release-weights", help="write a run's last checkpoint as the shipped fp16 weights file")
    p.add_argument("run", help="training run folder (holds last.pt)")
    p.add_argument("--out", default=None, help="weights file (default: the bundled default-model path)")
    p.set_defaults(func=_run_release)


def _run_release(a) -> int:
    from .default_model import DEFAULT_CHECKPOINT
    from .training.release import release_weights

    if not (Path(a.run) / "last.pt").is_file():
        print(f"error: {a.run} has no last.pt", file=sys.stderr)
        return 2
    out = Path(a.out) if a.out else DEFAULT_CHECKPOINT
    meta = release_weights(Path(a.run), out)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB) from iteration {meta['iteration']}")
    return 0


def _add_model_card(sub) -> None:
    p = sub.add_parser("model-card", help="render the default model's MODEL_CARD.md from its weights (+ eval JSON)")
    p.add_argument("--weights", default=None, help="weights file (default: the bundled default model)")
    p.add_argument("--eval-json", default=None, help="an `interformer eval --json` result to include")
    p.add_argument("--notes", default="", help="a paragraph of notes to include")
    p.add_argument("--out", default=None, help="output (default: MODEL_CARD.md beside the weights)")
    p.set_defaults(func=_run_model_card)


def _run_model_card(a) -> int:
    from .default_model import DEFAULT_CHECKPOINT
    from .training.model_card import render_model_card

    w = Path(a.weights) if a.weights else DEFAULT_CHECKPOINT
    if not w.is_file():
        print(f"error: no weights at {w}", file=sys.stderr)
        return 2
    out = Path(a.out) if a.out else w.parent / "MODEL_CARD.md"
    out.write_text(render_model_card(w, Path(a.eval_json) if a.eval_json else None, a.notes))
    print(f"wrote {out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="interformer", description="InterFormer Studio command line")
    sub = parser.add_subparsers(dest="command", required=True)
    from .evaluation.cli import add_eval_parser

    add_eval_parser(sub)
    _add_train(sub)
    _add_cache(sub)
    _add_release(sub)
    _add_model_card(sub)
    from .export.cli import add_export_parser

    add_export_parser(sub)
    from webapp.serve import add_serve_parser

    add_serve_parser(sub)
    from webapp.commands import add_create_admin_parser

    add_create_admin_parser(sub)
    from webapp.worker import add_worker_parser

    add_worker_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "func", None) is None:
        from .evaluation.cli import run_eval

        return run_eval(args)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
