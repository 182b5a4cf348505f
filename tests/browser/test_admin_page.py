"""The admin's project page in chromium: log in, upload an image and a bad file, see the
per-file results and the progress bar filled live over Socket.IO (served from our origin),
on a cross-origin-isolated page."""

from __future__ import annotations

import numpy as np
from PIL import Image

from webapp.accounts import create_user
from webapp.db import Database, database_url
from webapp.models import Role


def test_upload_and_live_progress(make_server, page, tmp_path):
    data_dir = tmp_path / "data"
    url = make_server(DATA_DIR=data_dir, PASSWORD_HASH_METHOD="scrypt:1024:8:1")
    db = Database(database_url({"DATA_DIR": data_dir}))
    with db.session() as s:
        create_user(s, "admin", "admin-password", Role.ADMIN, "scrypt:1024:8:1")
    db.dispose()
    good = tmp_path / "good.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (60, 80, 3), dtype=np.uint8)).save(good)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")

    page.goto(url + "/admin")
    assert page.url.startswith(url + "/login?next=/admin")
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", "admin-password")
    page.click("button[type=submit]")
    page.wait_for_url(url + "/admin")
    page.fill("input[name=name]", "Browser project")
    page.fill("textarea[name=classes]", "cat, dog")
    page.click("text=Create project")
    page.wait_for_url("**/admin/projects/*")
    assert page.evaluate("crossOriginIsolated") is True

    page.set_input_files("#upload-files", [str(good), str(bad)])
    page.click("#upload-form button")
    page.wait_for_function("document.getElementById('progress-text').textContent.startsWith('1 of 1 images ready')",
                           timeout=20_000)
    assert page.text_content("#upload-status") == "1 added, 0 duplicates, 1 rejected"
    rows = page.eval_on_selector_all("#upload-results tbody tr", "rs => rs.map(r => r.cells[1].textContent)")
    assert rows == ["added", "rejected"]
    assert page.text_content("#images tbody tr .feature") == "done"
    assert page.get_attribute("#progress", "aria-valuenow") == "100"
    assert not [m for m in page.console_log if "error" in m.lower()], page.console_log
    foreign = [u for u in page.requested if not u.startswith(url + "/") and not u.startswith("data:")]
    assert not foreign
