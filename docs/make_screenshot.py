"""Take the README's screenshot: the annotator on the demo project, with the bundled model.

    .venv/bin/python docs/make_screenshot.py [--model-dir var/models/default] [--out docs/img/annotator.png]

Starts the app as ``interformer serve --demo`` would (a fresh SQLite database in a temporary
data folder), waits for the worker to precompute the demo images, logs in as the demo
annotator in headless chromium at 1280x720, clicks on the object of the first image and saves
the page. Not a test: the picture is for people.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "browser"))

# (x, y, positive) on the demo's first image ("shapes", 640x480): the red disk, then a
# negative on the blue square so the mask stays on the disk.
CLICKS = [(200, 250, True)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-dir", default=str(REPO / "var" / "models" / "default"))
    ap.add_argument("--out", default=str(REPO / "docs" / "img" / "annotator.png"))
    a = ap.parse_args()

    from live_server import CHROMIUM, CHROMIUM_ARGS, serve
    from playwright.sync_api import sync_playwright

    from webapp.demo import DEMO_LOGINS, ensure_demo
    from webapp.serve import build_app

    with tempfile.TemporaryDirectory() as data:
        app = build_app(a.model_dir, data, threads=2)
        ensure_demo(app)
        with serve(app) as url, sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 720})
            name, password, _ = next(x for x in DEMO_LOGINS if x[0] == "annotator")
            page.goto(f"{url}/login?next=/annotate/1")
            page.fill("input[name=username]", name)
            page.fill("input[name=password]", password)
            page.click("button[type=submit]")
            page.wait_for_function("window.__annotate !== undefined && window.__annotate.ready !== undefined",
                                   timeout=120_000)
            deadline = time.time() + 180
            while time.time() < deadline:
                st = page.evaluate("window.__annotate.ready")
                if st and st.get("ok"):
                    break
                time.sleep(1)
            page.wait_for_timeout(2000)  # a person looks at the image first (the worker builds its session)
            for x, y, pos in CLICKS:
                page.evaluate("([x, y, p]) => window.__annotate.click(x, y, p)", [x, y, pos])
            page.wait_for_timeout(500)
            Path(a.out).parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=a.out)
            browser.close()
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
