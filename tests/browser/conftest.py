"""Browser-test fixtures: the Flask app on a free localhost port, and Debian's chromium
driven by Playwright.

Playwright cannot download its own browsers here, so the tests launch the system chromium
(``/usr/bin/chromium``, installed by scripts/setup.sh; override with ``INTERFORMER_CHROMIUM``)
with a fresh profile. A missing browser is a failure with instructions, never a skip.

The app runs with a fake model (tests/browser/fake_model.py): a tiny ONNX decoder with the
real decoder contract and a deterministic pyramid provider.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import fake_model  # noqa: E402
from live_server import CHROMIUM, CHROMIUM_ARGS, serve  # noqa: E402



@pytest.fixture(scope="session")
def fake_decoder_onnx(tmp_path_factory) -> Path:
    """The fake decoder exported once per test session."""
    return fake_model.export_decoder(tmp_path_factory.mktemp("decoder") / "decoder.onnx")


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory, fake_decoder_onnx) -> Path:
    """decoder.onnx + a matching decoder.json."""
    return fake_model.write_model_dir(tmp_path_factory.mktemp("model"), onnx_source=fake_decoder_onnx)


@pytest.fixture(scope="session")
def pyramid_provider() -> fake_model.FakePyramidProvider:
    return fake_model.FakePyramidProvider()


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    """The app's DATA_DIR (pyramid cache), shared by every app of the session."""
    return tmp_path_factory.mktemp("data")


@pytest.fixture(scope="session")
def make_server(data_dir, pyramid_provider) -> Iterator[Callable[..., str]]:
    """``make_server(**config) -> base URL``: a live app (fake provider, shared data dir)."""
    from webapp import create_app

    stack = []

    def start(**config) -> str:
        cfg = {"TESTING": True, "DATA_DIR": data_dir, "PYRAMID_PROVIDER": pyramid_provider, **config}
        cm = serve(create_app(cfg))
        url = cm.__enter__()
        stack.append(cm)
        return url

    yield start
    for cm in reversed(stack):
        cm.__exit__(None, None, None)


@pytest.fixture(scope="session")
def live_server(make_server, model_dir) -> str:
    """Base URL of the app with the matching fake decoder."""
    return make_server(MODEL_DIR=model_dir)


# WebGPU without a GPU: Chromium's software Vulkan (SwiftShader). Only for the test of the
# WebGPU branch of the decoder worker; everything else runs with --disable-gpu.
WEBGPU_ARGS = [a for a in CHROMIUM_ARGS if a != "--disable-gpu"] + [
    "--enable-unsafe-webgpu",
    "--enable-unsafe-swiftshader",
    "--use-webgpu-adapter=swiftshader",
    "--enable-features=Vulkan",
    "--use-angle=swiftshader",
]


@pytest.fixture(scope="session")
def playwright():
    """The Playwright driver (one per session: the sync API allows one per thread)."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(
            f"chromium not found at {CHROMIUM}: install Debian's package (bash scripts/setup.sh does: "
            "apt-get install -y chromium) or point INTERFORMER_CHROMIUM at a chromium binary",
            pytrace=False,
        )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("the playwright Python package is missing: .venv/bin/pip install -e '.[test]'", pytrace=False)
    pw = sync_playwright().start()
    yield pw
    pw.stop()


def launch_chromium(playwright, profile: Path, args: list[str]):
    """A persistent chromium context (Debian's chromium) on the fresh profile folder ``profile``."""
    return playwright.chromium.launch_persistent_context(
        str(profile),
        executable_path=CHROMIUM,
        headless=True,
        args=args,
        viewport={"width": 1100, "height": 900},
    )


@pytest.fixture(scope="session")
def browser_context(playwright, tmp_path_factory):
    """The test browser (flags CHROMIUM_ARGS, GPU off), one per test session."""
    ctx = launch_chromium(playwright, tmp_path_factory.mktemp("chromium-profile"), CHROMIUM_ARGS)
    yield ctx
    ctx.close()


@pytest.fixture
def webgpu_page(playwright, tmp_path):
    """A tab of a second browser with WebGPU on SwiftShader (see WEBGPU_ARGS)."""
    ctx = launch_chromium(playwright, tmp_path / "chromium-webgpu-profile", WEBGPU_ARGS)
    p = ctx.new_page()
    log: list[str] = []
    p.on("console", lambda m: log.append(f"console.{m.type}: {m.text}"))
    p.on("pageerror", lambda e: log.append(f"pageerror: {e}"))
    p.console_log = log
    yield p
    ctx.close()


@pytest.fixture
def page(browser_context):
    """A fresh tab; its console messages and page errors are kept in ``page.console_log``, the
    URLs it requested (workers' requests included) in ``page.requested``."""
    p = browser_context.new_page()
    log: list[str] = []
    requested: list[str] = []
    p.on("console", lambda m: log.append(f"console.{m.type}: {m.text}"))
    p.on("pageerror", lambda e: log.append(f"pageerror: {e}"))

    def on_request(r):
        requested.append(r.url)

    browser_context.on("request", on_request)
    p.console_log = log
    p.requested = requested
    yield p
    browser_context.remove_listener("request", on_request)
    p.close()
