"""``interformer serve``: run the web app on an exported model.

    interformer serve [--model-dir var/models/default] [--host 127.0.0.1] [--port 5000]
                      [--scheme int8] [--threads N] [--data-dir var] [--demo]

The model folder is what ``interformer export`` writes (decoder.onnx, decoder.json,
pyramid.onnx). The server computes each image's pyramid with onnxruntime (``PyramidService``,
in the in-process precompute worker) and the browser answers the clicks. The database is
``DATABASE_URL`` from the environment, else SQLite in the data directory (also
``INTERFORMER_DATA_DIR``). ``--demo`` creates the demo logins and project on an empty database
(webapp/demo.py) and prints them.

The app runs on Flask-SocketIO's server (werkzeug, threads; WebSocket through simple-websocket).
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
    p.add_argument("--demo", action="store_true",
                   help="on an empty database: create the demo logins and a project of the sample images")
    p.set_defaults(func=run_serve)
    return p


def build_app(model_dir: str | os.PathLike, data_dir: str | os.PathLike, scheme: str | None = None,
              threads: int | None = None):
    from . import create_app
    from .pyramid_service import DEFAULT_SCHEME, PyramidService

    service = PyramidService(model_dir, scheme=scheme or DEFAULT_SCHEME, threads=threads)
    return create_app({"MODEL_DIR": Path(model_dir), "DATA_DIR": Path(data_dir), "PYRAMID_PROVIDER": service})


def run_serve(args) -> int:
    from sqlalchemy.exc import SQLAlchemyError

    from .pyramid_service import ModelNotExportedError

    try:
        app = build_app(args.model_dir, args.data_dir, args.scheme, args.threads)
    except (ModelNotExportedError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except SQLAlchemyError as e:
        print(f"error: the database is not usable: {e}", file=sys.stderr)
        return 2
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
