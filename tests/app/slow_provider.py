"""The fake pyramid provider, slowed down, for killing a worker in the middle of a job:
``slow_fake_provider()`` reads ``SLOW_PROVIDER_DELAY_S`` (seconds per image) and
``SLOW_PROVIDER_MARK`` (a file touched when a computation starts) from the environment."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
from fake_model import FakePyramidProvider


class SlowFakeProvider(FakePyramidProvider):
    def __init__(self, delay_s: float, mark: Path | None):
        super().__init__()
        self.delay_s = delay_s
        self.mark = mark

    def __call__(self, rgb: np.ndarray) -> bytes:
        if self.mark is not None:
            self.mark.touch()
        time.sleep(self.delay_s)
        return super().__call__(rgb)


def slow_fake_provider() -> SlowFakeProvider:
    mark = os.environ.get("SLOW_PROVIDER_MARK")
    return SlowFakeProvider(float(os.environ.get("SLOW_PROVIDER_DELAY_S", "30")), Path(mark) if mark else None)
