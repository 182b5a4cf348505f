"""The annotator and the admin's project page in Chromium AND Firefox, at 1280x720 and 1920x1080.

Firefox is Debian's ``firefox-esr`` (installed by scripts/setup.sh) driven by Playwright over
WebDriver BiDi (``channel="moz-firefox"``; Playwright's own patched Firefox cannot be
downloaded here). In each browser and size: the annotator page needs no scrolling, its stage
is large and beside the side panel (no overlap), every toolbar control is inside the window,
a real mouse click inside the object gives a mask over it (the onnxruntime-web decoder runs
in that browser), and the admin's project page fits the width.
"""

from __future__ import annotations

import base64
import io
import os
import time
import warnings

import numpy as np
import pytest
from live_server import csrf_headers, log_in, serve_with_users
from PIL import Image


FIREFOX = os.environ.get("INTERFORMER_FIREFOX", "/usr/bin/firefox-esr")
W, H = 320, 240
CX, CY, R = 150, 110, 50
SIZES = [(1280, 720), (1920, 1080)]


def _png() -> bytes:
    yy, xx = np.mgrid[:H, :W]
    rgb = np.empty((H, W, 3), np.uint8)
    rgb[:] = (60, 120, 90)
    rgb[(xx - CX) ** 2 + (yy - CY) ** 2 <= R**2] = (230, 60, 40)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def firefox(playwright):
    if not os.access(FIREFOX, os.X_OK):
        pytest.fail(f"firefox not found at {FIREFOX}: install Debian's firefox-esr (bash scripts/setup.sh does) "
                    "or point INTERFORMER_FIREFOX at a Firefox >= 138", pytrace=False)
    b = playwright.firefox.launch(channel="moz-firefox", executable_path=FIREFOX, headless=True)
    yield b
    b.close()


@pytest.fixture(scope="module")
def project(make_server, model_dir, tmp_path_factory, playwright) -> tuple[str, int]:
    """A live app with one project holding one precomputed image; users admin and ann."""
    data_dir = tmp_path_factory.mktemp("layout-data")
    url = serve_with_users(make_server, data_dir, model_dir)
    api = playwright.request.new_context(base_url=url)
    assert api.post("/api/auth/login", data={"username": "admin", "password": "admin-password"}).ok
    csrf = csrf_headers(api)
    r = api.post("/api/projects", data={"name": "Layout", "classes": ["disk", "other"]}, headers=csrf)
    assert r.status == 201, r.text()
    pid = r.json()["project"]["id"]
    r = api.post(f"/api/projects/{pid}/images", headers=csrf,
                 multipart={"files": {"name": "disk.png", "mimeType": "image/png", "buffer": _png()}})
    assert r.ok, r.text()
    for _ in range(300):  # the in-process worker computes the pyramid
        if api.get(f"/api/projects/{pid}/progress").json().get("done") == 1:
            break
        time.sleep(0.1)
    else:
        pytest.fail("precompute did not finish")
    api.dispose()
    return url, pid


def _check_annotator(page, url: str, pid: int, w: int, h: int) -> None:
    page.set_viewport_size({"width": w, "height": h})
    page.goto(f"{url}/annotate/{pid}")
    try:  # generous: the first Firefox page compiles onnxruntime's wasm on a loaded 2-core machine
        # (and a decoder worker that does not start in 45 s is restarted on one thread by the page)
        page.wait_for_function("window.__annotate && window.__annotate.ready", timeout=100_000)
    except Exception:
        # KNOWN ISSUE (open, see the issue note): under full-suite load, Firefox ESR sometimes
        # stays at "Loading the decoder…" (onnxruntime-web worker start-up) and never recovers;
        # a reload loads it. Reported here, retried once, and a second hang fails the test.
        stuck = page.evaluate("document.body.innerText")[-200:]
        warnings.warn(f"annotator not ready after 100 s in {page.url} (reloading once): {stuck!r}", stacklevel=1)
        page.reload()
        try:
            page.wait_for_function("window.__annotate && window.__annotate.ready", timeout=90_000)
        except Exception as e:
            raise AssertionError(f"annotator not ready in {page.url}: {page.evaluate('document.body.innerText')[:1500]}") from e
    status = page.evaluate("window.__annotate.ready")
    assert status["ok"], status
    fallback = page.evaluate("document.getElementById('decoder-warning').hidden ? null : document.getElementById('decoder-warning').textContent")
    if fallback:  # the page recovered by itself and says so; reported, not hidden
        warnings.warn(f"{page.url}: {fallback}", stacklevel=1)
    lay = page.evaluate("""() => {
        const box = (el) => el.getBoundingClientRect().toJSON();
        const controls = [...document.querySelectorAll('button, input, select')]
            .filter((el) => el.offsetParent !== null && !el.closest('dialog:not([open])'))
            .map((el) => ({id: el.id || el.textContent.trim().slice(0, 20), ...box(el)}));
        return {sw: document.documentElement.scrollWidth, sh: document.documentElement.scrollHeight,
                stage: box(document.getElementById('stage')), side: box(document.querySelector('.side')),
                controls};
    }""")
    assert lay["sw"] <= w and lay["sh"] <= h, lay
    stage, side = lay["stage"], lay["side"]
    assert stage["width"] >= 0.6 * w and stage["height"] >= 0.65 * h, lay
    assert side["left"] >= stage["right"] - 1 and side["right"] <= w, lay  # beside, not over the stage
    for c in lay["controls"]:
        if c["width"] == 0 and c["height"] == 0:
            continue  # e.g. hidden file inputs
        assert 0 <= c["left"] and c["right"] <= w + 0.5 and 0 <= c["top"] and c["bottom"] <= h + 0.5, c

    # a real click inside the object: the page's decoder answers in this browser
    x, y = page.evaluate(f"window.__annotate.imageToClient({CX}, {CY})")
    page.mouse.click(x, y)
    page.wait_for_function("window.__annotate.state().clicks.length === 1", timeout=30_000)
    m = page.evaluate("window.__annotate.state().mask")
    bits = np.unpackbits(np.frombuffer(base64.b64decode(m["base64"]), np.uint8))
    mask = bits[: m["height"] * m["width"]].reshape(m["height"], m["width"]).astype(bool)
    assert mask.shape == (H, W) and mask[CY, CX] and not mask[0, 0] and mask.sum() > 500
    page.focus("#stage")
    page.keyboard.press("Escape")  # reset the object: the next size starts from no clicks
    page.wait_for_function("window.__annotate.state().clicks.length === 0")


def _check_admin_page(page, url: str, pid: int, w: int, h: int) -> None:
    page.set_viewport_size({"width": w, "height": h})
    page.goto(f"{url}/admin/projects/{pid}")
    page.wait_for_function("document.getElementById('progress-text').textContent.startsWith('1 of 1')",
                           timeout=30_000)
    sw = page.evaluate("document.documentElement.scrollWidth")
    assert sw <= w, sw


@pytest.mark.parametrize("browser_name", ["chromium", "firefox"])
def test_pages_fit_and_work_in_both_browsers(browser_name, project, browser_context, firefox):
    url, pid = project
    if browser_name == "chromium":
        page = browser_context.new_page()
        close = page.close
        browser_context.clear_cookies()
    else:
        ctx = firefox.new_context()
        page = ctx.new_page()
        close = ctx.close
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        ua = page.evaluate("navigator.userAgent")
        assert ("Firefox" in ua) == (browser_name == "firefox"), ua
        log_in(page, url, "ann", "ann-password")
        for w, h in SIZES:
            _check_annotator(page, url, pid, w, h)
        page.context.clear_cookies()
        log_in(page, url, "admin", "admin-password")
        for w, h in SIZES:
            _check_admin_page(page, url, pid, w, h)
        assert not errors, errors
    finally:
        close()
        if browser_name == "chromium":
            browser_context.clear_cookies()
