"""Crowdsourcing in headless chromium with the fake model: the annotator's work in progress
comes back after a reload (from the server, and from IndexedDB when the server never got
it); objects accepted while offline are sent when the connection returns, also after the tab
was closed while offline, and a save whose answer was lost is not stored twice; a reviewer
sends work back with a comment that the annotator sees, then accepts it; the dashboard
updates live."""

from __future__ import annotations

import io

import numpy as np
import pytest
from live_server import CHROMIUM, CHROMIUM_ARGS, csrf_headers
from PIL import Image

from webapp.accounts import create_user
from webapp.db import Database, database_url
from webapp.models import Role

HASH = "scrypt:1024:8:1"
W, H = 320, 240
CENTRES = [(120, 100), (200, 140)]
RADIUS = 45
ANN = "window.__annotate"


def disk_png(cx: int, cy: int, seed: int) -> bytes:
    yy, xx = np.mgrid[:H, :W]
    rgb = np.empty((H, W, 3), np.uint8)
    rgb[:] = (70 + 10 * seed, 110, 80)
    rgb[(xx - cx) ** 2 + (yy - cy) ** 2 <= RADIUS**2] = (230, 60, 40)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture
def crowd(make_server, model_dir, tmp_path, page):
    """A server with admin, two annotators and a reviewer, and a project of two disk images."""
    data_dir = tmp_path / "data"
    url = make_server(DATA_DIR=data_dir, MODEL_DIR=model_dir, PASSWORD_HASH_METHOD=HASH)
    db = Database(database_url({"DATA_DIR": data_dir}))
    with db.session() as s:
        for name, role in (("admin", Role.ADMIN), ("ann", Role.ANNOTATOR), ("rev", Role.REVIEWER)):
            create_user(s, name, f"{name}-password", role, HASH)
    db.dispose()
    api_login(page, url, "admin")
    csrf = csrf_headers(page.request, url)
    p = page.request.post(f"{url}/api/projects", data={"name": "Crowd", "classes": ["disk", "other"]},
                          headers=csrf).json()["project"]
    files = {f"d{i}.png": disk_png(cx, cy, i) for i, (cx, cy) in enumerate(CENTRES)}
    for name, data in files.items():
        up = page.request.post(f"{url}/api/projects/{p['id']}/images", headers=csrf,
                               multipart={"files": {"name": name, "mimeType": "image/png", "buffer": data}})
        assert up.status == 201
    return {"url": url, "pid": p["id"]}


def api_login(page, url: str, user: str) -> None:
    resp = page.request.post(f"{url}/api/auth/login", data={"username": user, "password": f"{user}-password"})
    assert resp.ok, resp.text()


def open_annotator(page, url: str, path: str) -> dict:
    page.goto(url + path)
    status = page.evaluate(f"{ANN}.ready")
    assert status["ok"], (status, page.console_log)
    return page.evaluate(f"{ANN}.state()")


def server_objects(page, url: str, iid: int) -> list[dict]:
    return page.request.get(f"{url}/api/images/{iid}/objects").json()["objects"]


def test_work_in_progress_survives_a_reload(crowd, page):
    url, pid = crowd["url"], crowd["pid"]
    api_login(page, url, "ann")
    st = open_annotator(page, url, f"/annotate/{pid}")
    iid = st["imageId"]
    assert st["assignment"]["status"] == "active" and st["assignment"]["image_id"] == iid
    cx, cy = CENTRES[0]
    page.evaluate(f"{ANN}.click({cx}, {cy}, true)")
    page.evaluate(f"{ANN}.accept()")
    page.evaluate(f"{ANN}.saved()")
    # an object in progress: two clicks and the second class
    page.keyboard.press("2")
    page.evaluate(f"{ANN}.click({cx + 20}, {cy}, true)")
    page.evaluate(f"{ANN}.click({cx + 40}, {cy}, false)")
    before = page.evaluate(f"{ANN}.state()")
    page.evaluate(f"{ANN}.draftSynced()")
    draft = page.request.get(f"{url}/api/images/{iid}/draft").json()["draft"]
    assert [(c["x"], c["y"], c["positive"]) for c in draft["clicks"]] == [(cx + 20, cy, True), (cx + 40, cy, False)]

    page.reload()
    after = page.evaluate(f"{ANN}.ready") and page.evaluate(f"{ANN}.state()")
    assert after["imageId"] == iid and page.url.endswith(f"/annotate/{pid}/{iid}")
    assert after["clicks"] == before["clicks"] and after["classIndex"] == 1
    assert after["mask"] == before["mask"]  # the same mask, replayed through the decoder
    assert [o["save"] for o in after["objects"]] == ["saved"]
    assert "Restored your unfinished object (2 clicks)" in page.text_content("#status")

    # the server never got the newest draft (its PUT fails): IndexedDB has it after a reload
    page.route("**/api/images/*/draft", lambda r: r.abort() if r.request.method == "PUT" else r.continue_())
    page.evaluate(f"{ANN}.click({cx + 10}, {cy + 30}, true)")
    local = page.evaluate(f"{ANN}.localDraft()")
    assert len(local["clicks"]) == 3 and not local.get("synced")
    page.reload()
    page.evaluate(f"{ANN}.ready")
    assert len(page.evaluate(f"{ANN}.state()")["clicks"]) == 3
    page.unroute("**/api/images/*/draft")
    page.evaluate(f"{ANN}.draftSynced()")
    page.wait_for_function(f"{ANN}.state().draftsUnsynced === 0")
    assert len(page.request.get(f"{url}/api/images/{iid}/draft").json()["draft"]["clicks"]) == 3

    # submit clears the draft; the next image comes from the queue
    page.evaluate(f"{ANN}.reset()")
    res = page.evaluate(f"{ANN}.submit()")
    assert res["ok"] and res["next"] != iid
    assert page.request.get(f"{url}/api/images/{iid}/draft").json()["draft"] is None
    assert not [m for m in page.console_log if "pageerror" in m], page.console_log


def test_offline_work_is_sent_when_back_without_duplicates(crowd, page, browser_context):
    url, pid = crowd["url"], crowd["pid"]
    api_login(page, url, "ann")
    st = open_annotator(page, url, f"/annotate/{pid}")
    iid = st["imageId"]
    cx, cy = CENTRES[0]
    try:
        # offline: the object waits (retrying) in the outbox
        browser_context.set_offline(True)
        page.evaluate(f"{ANN}.click({cx}, {cy}, true)")
        page.evaluate(f"{ANN}.accept()")
        page.wait_for_function(f"{ANN}.state().objects[0]?.save === 'retrying'")
        assert len(page.evaluate(f"{ANN}.outbox()")) == 1
        browser_context.set_offline(False)  # the 'online' event sends it at once
        page.wait_for_function(f"{ANN}.state().objects[0]?.save === 'saved'", timeout=10_000)
        assert page.evaluate(f"{ANN}.outbox()") == []
        assert len(server_objects(page, url, iid)) == 1

        # offline again, another object, and the tab is closed before the connection returns
        browser_context.set_offline(True)
        page.evaluate(f"{ANN}.click({cx + 25}, {cy + 10}, true)")
        page.evaluate(f"{ANN}.accept()")
        page.wait_for_function(f"{ANN}.state().objects[1]?.save === 'retrying'")
        page.close()
    finally:
        browser_context.set_offline(False)
    page2 = browser_context.new_page()
    page2.console_log = []
    page2.on("pageerror", lambda e: page2.console_log.append(f"pageerror: {e}"))
    st = open_annotator(page2, url, f"/annotate/{pid}")
    assert st["imageId"] == iid
    page2.evaluate(f"{ANN}.saved()")
    st = page2.evaluate(f"{ANN}.state()")
    assert [o["save"] for o in st["objects"]] == ["saved", "saved"]
    objs = server_objects(page2, url, iid)
    assert len(objs) == 2 and len({o["client_id"] for o in objs}) == 2

    # a save that reached the server but whose answer was lost: resent, stored once
    lost = []

    def drop_answer(route):
        if route.request.method == "POST" and not lost:
            route.fetch()  # the server stores it...
            lost.append(1)
            route.abort()  # ...but the page never hears back
        else:
            route.continue_()

    page2.route("**/api/images/*/objects", drop_answer)
    page2.evaluate(f"{ANN}.click({cx - 20}, {cy - 20}, true)")
    page2.evaluate(f"{ANN}.accept()")
    page2.evaluate(f"{ANN}.saved()")
    page2.unroute("**/api/images/*/objects")
    assert lost and len(server_objects(page2, url, iid)) == 3
    assert [o["save"] for o in page2.evaluate(f"{ANN}.state()")["objects"]] == ["saved"] * 3
    assert page2.evaluate(f"{ANN}.outbox()") == []
    assert not page2.console_log, page2.console_log
    page2.close()


@pytest.fixture
def reviewer_browser(playwright, tmp_path):
    """A second browser (its own cookies) for the reviewer."""
    ctx = playwright.chromium.launch_persistent_context(str(tmp_path / "reviewer-profile"), executable_path=CHROMIUM,
                                                       headless=True, args=CHROMIUM_ARGS,
                                                       viewport={"width": 1100, "height": 900})
    yield ctx
    ctx.close()


def test_review_cycle_and_live_dashboard(crowd, page, reviewer_browser):
    url, pid = crowd["url"], crowd["pid"]
    dash = reviewer_browser.new_page()
    api_login(dash, url, "rev")
    dash.goto(f"{url}/admin/projects/{pid}/dashboard")
    dash.wait_for_function("window.__dashboard && window.__dashboard.joined && window.__dashboard.loads >= 1")
    loads = dash.evaluate("window.__dashboard.loads")

    api_login(page, url, "ann")
    st = open_annotator(page, url, f"/annotate/{pid}")
    iid = st["imageId"]
    cx, cy = CENTRES[0]
    page.evaluate(f"{ANN}.click({cx}, {cy}, true)")
    page.evaluate(f"{ANN}.accept()")
    page.evaluate(f"{ANN}.saved()")
    dash.wait_for_function(f"window.__dashboard.loads > {loads} && window.__dashboard.data.annotators[0]?.objects === 1")
    assert page.evaluate(f"{ANN}.submit()")["ok"]
    dash.wait_for_function("window.__dashboard.data.images.submitted === 1")
    row = dash.eval_on_selector("#dash-annotators tbody tr", "tr => Array.from(tr.cells, c => c.textContent)")
    assert row[0] == "ann" and row[2] == "1" and row[5] == "1" and row[7] == "1.00"

    review = reviewer_browser.new_page()
    review.goto(f"{url}/review/{pid}")
    review.wait_for_selector(".review-item")
    review.click(".review-reject")
    review.wait_for_function("document.querySelector('.review-error').textContent.includes('needs a comment')")
    review.fill(".review-comment", "Please add the second disk too")
    review.click(".review-reject")
    review.wait_for_function("document.getElementById('review-status').textContent.includes('sent back')")
    dash.wait_for_function("window.__dashboard.data.annotators[0].rejected === 1")

    # the annotator finishes the image they hold, then the returned one comes first
    st = open_annotator(page, url, f"/annotate/{pid}")
    assert st["imageId"] != iid and not page.is_visible("#review-note")
    assert page.evaluate(f"{ANN}.submit()") == {"ok": True, "next": iid}
    st = page.evaluate(f"{ANN}.state()")
    assert st["imageId"] == iid and st["assignment"]["status"] == "active"
    assert page.is_visible("#review-note")
    assert page.text_content("#review-note") == "Sent back by the reviewer: Please add the second disk too"
    assert len(st["objects"]) == 1  # the earlier work is there
    assert page.evaluate(f"{ANN}.submit()")["ok"]

    aid = st["assignment"]["id"]
    review.goto(f"{url}/review/{pid}")
    review.wait_for_selector(f".review-item[data-assignment-id='{aid}']")
    assert review.locator(".review-item").count() == 2  # the returned image and the other one
    review.click(f".review-item[data-assignment-id='{aid}'] .review-accept")
    review.wait_for_function("document.getElementById('review-status').textContent.includes('accepted')")
    dash.wait_for_function("window.__dashboard.data.annotators[0].accepted === 1")
    assert dash.evaluate("window.__dashboard.data.images.submitted") == 2
    assert review.locator(".review-item").count() == 1
    accepted = review.request.get(f"{url}/api/projects/{pid}/review?status=accepted").json()["items"]
    assert [i["image"]["id"] for i in accepted] == [iid]
