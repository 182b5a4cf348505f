"""``interformer serve``: run the web app on an exported model.

    interformer serve [--model-dir var/models/default] [--host 127.0.0.1] [--port 5000]
                      [--scheme int8] [--threads N] [--data-dir var]

The model folder is what ``interformer export`` writes (decoder.onnx, decoder.json,
pyramid.onnx). The server computes each image's pyramid with onnxruntime (``PyramidService``)
and the browser answers the clicks.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def add_serve_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("serve", help="run the web app (server precompute + in-browser decoder)")
    p.add_argument("--model-dir", default=os.environ.get("INTERFORMER_MODEL_DIR", str(REPO / "var" / "models" / "default")),
                   help="exported model folder (interformer export --out ...) (default: %(default)s)")
    p.add_argument("--data-dir", default=os.environ.get("INTERFORMER_DATA_DIR", str(REPO / "var")),
                   help="where the app writes its data and caches (default: %(default)s)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=5000)
    p.add_argument("--scheme", default=None, help="pyramid quantization scheme (default: the service's)")
    p.add_argument("--threads", type=int, default=None, help="onnxruntime threads for the precompute")
    p.set_defaults(func=run_serve)
    return p


def build_app(model_dir: str | os.PathLike, data_dir: str | os.PathLike, scheme: str | None = None,
              threads: int | None = None):
    from . import create_app
    from .pyramid_service import DEFAULT_SCHEME, PyramidService

    service = PyramidService(model_dir, scheme=scheme or DEFAULT_SCHEME, threads=threads)
    return create_app({"MODEL_DIR": Path(model_dir), "DATA_DIR": Path(data_dir), "PYRAMID_PROVIDER": service})


def run_serve(args) -> int:
    from .pyramid_service import ModelNotExportedError

    try:
        app = build_app(args.model_dir, args.data_dir, args.scheme, args.threads)
    except (ModelNotExportedError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"InterFormer Studio on http://{args.host}:{args.port}/  (model {args.model_dir})", flush=True)
    app.run(host=args.host, port=args.port, threaded=True, use_reloader=False)
    return 0
