"""Shared test fixtures: where ../shared is, and the official-parity fixture folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared_data import REPO, shared_root  # noqa: F401  (REPO: kept for fixtures below)


@pytest.fixture(scope="session")
def parity_dir() -> Path:
    d = shared_root() / "fixtures" / "official_parity"
    if not (d / "small_light_io.npz").is_file():
        pytest.fail(
            f"official parity fixture not found at {d}: set INTERFORMER_SHARED to the folder that "
            "holds fixtures/official_parity (default: <repo>/../shared)"
        )
    return d


@pytest.fixture(scope="session")
def tiny_data_dir() -> Path:
    d = shared_root() / "data" / "tiny"
    if not (d / "images").is_dir():
        pytest.fail(f"shared tiny data set not found at {d} (set INTERFORMER_SHARED)")
    return d
