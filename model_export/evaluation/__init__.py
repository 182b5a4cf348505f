"""NoC evaluation: the segmenter protocol, the click loop, baselines, reports and the ``eval`` CLI."""

from .noc import FolderResult, NocMetrics, SampleResult, aggregate, evaluate_folder, evaluate_samples
from .segmenter import InteractiveSegmenter
from .segmenters import BASELINES, build_segmenter

__all__ = [
    "BASELINES",
    "FolderResult",
    "InteractiveSegmenter",
    "NocMetrics",
    "SampleResult",
    "aggregate",
    "build_segmenter",
    "evaluate_folder",
    "evaluate_samples",
]
