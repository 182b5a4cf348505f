"""The demo set-up (`interformer serve --demo`), and cross-origin isolation of the new pages."""

from __future__ import annotations

import pytest
from app_helpers import ADMIN, login, wait_idle

from model_export.cli import main as cli_main
from webapp.demo import DEMO_LOGINS, ensure_demo
from webapp.headers import ISOLATION_HEADERS


def test_demo_creates_logins_and_a_precomputed_project_once(app):
    assert ensure_demo(app) is True
    wait_idle(app)
    admin_name, admin_pw, _ = DEMO_LOGINS[0]
    admin = login(app.test_client(), admin_name, admin_pw)
    projects = admin.get("/api/projects").get_json()["projects"]
    assert [p["name"] for p in projects] == ["Demo"]
    assert projects[0]["progress"]["total"] == 3 and projects[0]["progress"]["done"] == 3
    annot_name, annot_pw, _ = DEMO_LOGINS[1]
    me = login(app.test_client(), annot_name, annot_pw).get("/api/auth/me").get_json()["user"]
    assert me["role"] == "annotator"
    assert ensure_demo(app) is False
    assert len(admin.get("/api/projects").get_json()["projects"]) == 1


def test_serve_demo_prints_the_url_and_logins(make_app, monkeypatch, capsys, tmp_path):
    import flask_socketio

    import webapp.serve

    built = {}

    def fake_build(model_dir, data_dir, scheme=None, threads=None, provider_spec=None):
        built["app"] = make_app()
        return built["app"]

    ran = {}
    monkeypatch.setattr(webapp.serve, "build_app", fake_build)
    monkeypatch.setattr(flask_socketio.SocketIO, "run", lambda self, app, **kw: ran.update(kw))
    rc = cli_main(["serve", "--demo", "--port", "5123", "--data-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert rc == 0 and ran["port"] == 5123 and ran["host"] == "127.0.0.1"
    assert "http://127.0.0.1:5123/" in out
    assert "admin / admin-demo" in out and "annotator / annotator-demo" in out
    wait_idle(built["app"])


PAGES = ["/login", "/admin", "/admin/users", "/api/projects", "/static/js/admin_project.js", "/static/css/app.css",
         "/vendor/socket.io/socket.io.esm.min.js"]


@pytest.mark.parametrize("path", PAGES)
def test_new_pages_are_cross_origin_isolated(app, users, path):
    c = login(app.test_client(), *ADMIN)
    resp = c.get(path)
    assert resp.status_code == 200, path
    for name, value in ISOLATION_HEADERS.items():
        assert resp.headers.get(name) == value, (path, name)
    if path.endswith(".js"):
        assert resp.mimetype == "text/javascript"
    assert app.test_client().get("/vendor/socket.io/..%2f..%2fpackage.json").status_code == 404


@pytest.mark.parametrize("command", ["serve", "worker"])
def test_cli_start_up_errors_exit_2_with_one_line(command, tmp_path):
    """A model folder without an export, or a database that cannot be used: one line on stderr,
    exit code 2, no traceback (webapp/startup.py, shared by both entry points)."""
    import os
    import subprocess
    import sys

    from scaleout_support import BROWSER_TESTS, FAKE_PROVIDER, REDIS_URL, REPO

    def run(*args: str, database_url: str) -> subprocess.CompletedProcess:
        extra = ["--redis-url", REDIS_URL] if command == "worker" else []
        env = {**os.environ, "DATABASE_URL": database_url,
               "PYTHONPATH": os.pathsep.join([str(BROWSER_TESTS), str(REPO), os.environ.get("PYTHONPATH", "")])}
        return subprocess.run([sys.executable, "-m", "model_export.cli", command, "--data-dir", str(tmp_path), *extra, *args],
                              capture_output=True, text=True, timeout=120, env=env, cwd=REPO)

    no_model = run("--model-dir", str(tmp_path / "nothing"), database_url=f"sqlite:///{tmp_path}/db.sqlite")
    assert no_model.returncode == 2, no_model.stderr
    assert no_model.stderr.startswith("error: ") and "Traceback" not in no_model.stderr
    no_db = run("--provider", FAKE_PROVIDER, database_url="postgresql://nobody@127.0.0.1:1/none")
    assert no_db.returncode == 2, no_db.stderr
    assert "error: the database is not usable" in no_db.stderr and "Traceback" not in no_db.stderr
