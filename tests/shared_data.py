"""Where the repository and the shared material (../shared: data, fixtures) are, for tests.

A plain module (not conftest) so that test files anywhere under tests/ can import it by name.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def shared_root() -> Path:
    return Path(os.environ.get("INTERFORMER_SHARED", str(REPO.parent / "shared")))
