"""``interformer serve``: run the web app on an exported model.

    interformer serve [--model-dir var/models/default] [--host 127.0.0.1] [--port 5000]
                      [--scheme int8] [--threads N] [--data-dir var] [--demo]

The model folder is what ``interformer export`` writes (decoder.onnx, decoder.json,
pyramid.onnx). The server computes each image's pyramid with onnxruntime (``PyramidService``,
in the in-process precompute worker) and the browser answers the clicks. The database is
``DATABASE_URL`` from the environment, else SQLite in the data directory (also
``INTERFORMER_DATA_DIR``). ``--demo`` creates the demo logins and project on an empty database
(webapp/demo.py) and prints them. ``--provider module:factory`` replaces the exported model's
pyramid service by another provider (webapp/providers.py).

Scaled out (docs/deploy.md): with ``PRECOMPUTE_WORKER=redis`` and ``REDIS_URL`` in the
environment the precompute jobs go to ``interformer worker`` processes, live events travel
through Redis, and the web process needs no pyramid model (without one, the playground serves
only sample pyramids already cached).

The app runs on Flask-SocketIO's server (werkzeug, threads; WebSocket through simple-websocket).
"""

from __future__ import annotations

import argparse
import os
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
    p.add_argument("--provider", default=None, metavar="MODULE:FACTORY",
                   help="pyramid provider factory instead of the exported model (webapp/providers.py)")
    p.add_argument("--demo", action="store_true",
                   help="on an empty database: create the demo logins and a project of the sample images")
    p.set_defaults(func=run_serve)
    return p


def build_app(model_dir: str | os.PathLike, data_dir: str | os.PathLike, scheme: str | None = None,
              threads: int | None = None, provider_spec: str | None = None):
    from . import create_app
    from .providers import load_provider
    from .pyramid_service import ModelNotExportedError
    from .scaleout import env_defaults, worker_mode

    try:
        service = load_provider(model_dir, provider_spec, scheme, threads)
    except ModelNotExportedError:
        if worker_mode(env_defaults()) != "redis":
            raise
        service = None  # the workers compute the pyramids
    return create_app({"MODEL_DIR": Path(model_dir), "DATA_DIR": Path(data_dir), "PYRAMID_PROVIDER": service})


def run_serve(args) -> int:
    from .startup import EXIT_BAD_SETUP, start_or_report

    app = start_or_report(lambda: build_app(args.model_dir, args.data_dir, args.scheme, args.threads, args.provider))
    if app is None:
        return EXIT_BAD_SETUP
    url = f"http://{args.host}:{args.port}/"
    if args.demo:
        from .demo import DEMO_LOGINS, ensure_demo

        made = ensure_demo(app)
        print("demo project and logins created" if made else "the database has users already; demo logins if unchanged:")
        for name, password, role in DEMO_LOGINS:
            print(f"  {role.value:9s}  {name} / {password}")
    print(f"InterFormer Studio on {url}  (model {args.model_dir}, data {args.data_dir})", flush=True)
    app.extensions["socketio"].run(app, host=args.host, port=args.port, use_reloader=False, log_output=False,
                                   allow_unsafe_werkzeug=True)
    return 0
