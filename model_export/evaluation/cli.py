"""The ``interformer eval`` subcommand: NoC evaluation of models on dataset folders.

``add_eval_parser(subparsers)`` adds the subcommand to the top-level ``interformer`` parser
(and sets ``func=run_eval``); ``run_eval(args)`` runs every model on every dataset, prints
one table for all, optionally writes JSON and a convergence plot, and returns the exit code:
0 success, 1 a run failed, 2 bad input (missing or malformed folder, unknown model, model
that cannot be built), 130 interrupted.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tqdm import tqdm

from .noc import DEFAULT_MAX_CLICKS, FolderResult, SampleError, aggregate, evaluate_samples, select_samples
from .report import Run, environment, format_table, plot_convergence, write_json
from .segmenters import BASELINES, ModelUnavailableError, UnknownModelError, build_segmenter

PROG = "interformer eval"


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {v}")
    return v


def add_eval_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``eval`` subcommand to an ``argparse`` subparsers object and return its parser."""
    p = subparsers.add_parser(
        "eval",
        help="NoC evaluation (number of clicks to reach IoU 85/90%%) on dataset folders",
        description=(
            "Simulated-click NoC evaluation (spec section 4): every model on every dataset "
            "folder (images/ + masks/, masks 0 background, 1 foreground, 255 ignore); prints "
            "one table for all runs."
        ),
    )
    p.add_argument("datasets", nargs="+", metavar="DATASET", help="dataset folder(s) holding images/ and masks/")
    p.add_argument(
        "--model",
        action="append",
        metavar="NAME",
        help=(
            "model(s) to evaluate, repeatable or comma-separated: 'default', a named InterFormer "
            f"config (e.g. 'interformer-light'), or a baseline ({', '.join(BASELINES)}); default: default"
        ),
    )
    p.add_argument("--checkpoint", metavar="PATH", help="InterFormer checkpoint (not used by the baselines)")
    p.add_argument(
        "--max-clicks", type=_positive_int, default=DEFAULT_MAX_CLICKS, metavar="N",
        help=f"clicks per sample (default {DEFAULT_MAX_CLICKS})",
    )
    p.add_argument("--limit", type=_positive_int, metavar="N", help="only the first N samples of each dataset")
    p.add_argument("--zoom-in", action="store_true", help="InterFormer zoom-in inference (not used by the baselines)")
    p.add_argument("--threads", type=_positive_int, metavar="N", help="CPU threads for inference")
    p.add_argument("--json", type=Path, metavar="PATH", help="write metrics and per-sample records as JSON")
    p.add_argument("--plot", type=Path, metavar="PATH", help="write a mean-IoU-per-click plot (PNG)")
    p.set_defaults(func=run_eval)
    return p


def _error(msg: str) -> None:
    print(f"{PROG}: error: {msg}", file=sys.stderr)


def parse_models(values: list[str] | None) -> list[str]:
    """``--model`` values (repeated and/or comma-separated) -> unique names in order."""
    names: list[str] = []
    for v in values or ["default"]:
        for n in v.split(","):
            n = n.strip()
            if n and n not in names:
                names.append(n)
    return names


def _dataset_names(paths: list[Path]) -> list[str]:
    names = [p.resolve().name or str(p) for p in paths]
    return [n if names.count(n) == 1 else str(p) for n, p in zip(names, paths)]


def run_eval(args: argparse.Namespace) -> int:
    """Run the evaluation described by the parsed ``eval`` arguments; returns the exit code."""
    models = parse_models(args.model)
    if not models:
        _error("no model given (--model)")
        return 2
    max_clicks = args.max_clicks
    limit = getattr(args, "limit", None)

    paths = [Path(d) for d in args.datasets]
    datasets = []
    for path, name in zip(paths, _dataset_names(paths)):
        if not path.exists():
            _error(f"dataset folder not found: {path}")
            return 2
        if not path.is_dir():
            _error(f"dataset is not a folder: {path}")
            return 2
        try:
            samples = select_samples(path, limit)
        except (ValueError, OSError) as e:
            _error(f"bad dataset folder {path}: {e}")
            return 2
        if not samples:
            _error(f"dataset folder {path} has no masks in masks/")
            return 2
        datasets.append((name, path, samples))

    segmenters = []
    for m in models:
        try:
            segmenters.append((m, build_segmenter(m, args.checkpoint, args.zoom_in, args.threads)))
        except UnknownModelError as e:
            _error(f"{e} (baselines: {', '.join(BASELINES)}; other names go to the InterFormer predictor)")
            return 2
        except ModelUnavailableError as e:
            _error(f"cannot evaluate model {m!r}: {e}")
            return 2
        except Exception as e:  # bad config name, checkpoint, missing weights: all bad input here
            detail = str(e) if isinstance(e, ValueError) else f"{type(e).__name__}: {e}"
            _error(f"cannot build model {m!r}: {detail}")
            return 2

    runs: list[Run] = []
    total = len(segmenters) * sum(len(s) for _, _, s in datasets)
    try:
        with tqdm(total=total, unit="sample", file=sys.stderr, dynamic_ncols=True) as bar:
            for model, seg in segmenters:
                for name, path, samples in datasets:
                    bar.set_description(f"{model} @ {name}")
                    per_sample = evaluate_samples(seg, samples, max_clicks, on_sample=lambda _r: bar.update(1))
                    result = FolderResult(aggregate(per_sample, max_clicks), per_sample)
                    runs.append(Run(model, name, result, str(path)))
    except SampleError as e:
        _error(f"evaluation of model {model!r} on {name} failed: {e}")
        return 1
    except KeyboardInterrupt:
        _error("interrupted")
        return 130

    print(format_table(runs))
    try:
        if args.json is not None:
            env = environment(
                models=models,
                datasets=[str(p) for _, p, _ in datasets],
                max_clicks=max_clicks,
                limit=limit,
                zoom_in=bool(args.zoom_in),
                threads=args.threads,
                checkpoint=args.checkpoint,
                argv=sys.argv,
            )
            print(f"wrote {write_json(runs, args.json, env)}", file=sys.stderr)
        if args.plot is not None:
            print(f"wrote {plot_convergence(runs, args.plot)}", file=sys.stderr)
    except OSError as e:
        _error(f"cannot write output: {e}")
        return 1
    return 0
