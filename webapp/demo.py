"""The demo's content: three logins (admin, annotator, reviewer) and a project made of the
bundled sample images.

``ensure_demo(app)`` runs once, on a database without users (``interformer serve --demo``,
as ``scripts/demo.sh`` starts it): it creates the accounts in ``DEMO_LOGINS`` and the project
"Demo" from ``webapp/samples`` (added through the normal upload checks, so their pyramids
are computed by the worker like any upload). On a database that has users it changes nothing.
"""

from __future__ import annotations

from pathlib import Path

from flask import Flask

from .accounts import count_users, create_user
from .db import get_db
from .models import Role
from .precompute import provider_model_id
from .projects import create_project
from .samples_store import load_samples
from .uploads import UploadLimits, add_uploads

DEMO_LOGINS = [("admin", "admin-demo", Role.ADMIN), ("annotator", "annotator-demo", Role.ANNOTATOR),
               ("reviewer", "reviewer-demo", Role.REVIEWER)]
DEMO_PROJECT = "Demo"
DEMO_CLASSES = [{"name": "object", "color": "#e6194b"}, {"name": "cell", "color": "#3cb44b"},
                {"name": "building", "color": "#4363d8"}]


def ensure_demo(app: Flask) -> bool:
    """Create the demo accounts and project when there are no users; True if it did."""
    db = get_db(app)
    pre = app.extensions["precompute"]
    with db.session() as s:
        if count_users(s):
            return False
        users = [create_user(s, name, password, role, app.config["PASSWORD_HASH_METHOD"])
                 for name, password, role in DEMO_LOGINS]
        project = create_project(s, DEMO_PROJECT, DEMO_CLASSES,
                                 provider_model_id(app.config.get("PYRAMID_PROVIDER")), users[0])
        samples = load_samples(Path(app.config["SAMPLES_DIR"]))
        files = []
        for sample in samples.values():
            files.append((sample.path.name, open(sample.path, "rb")))  # noqa: SIM115 (closed below)
        try:
            add_uploads(s, app.extensions["blob_store"], project, users[0], files,
                        UploadLimits.from_config(app.config), pre.enqueue)
        finally:
            for _, f in files:
                f.close()
    return True
