"""Model name -> segmenter: the two baselines here, everything else from the InterFormer predictor."""

from __future__ import annotations

from .segmenter import InteractiveSegmenter

BASELINES = ("sam-decoder", "grabcut")


class UnknownModelError(ValueError):
    """The model name names neither a baseline nor an InterFormer config."""


class ModelUnavailableError(RuntimeError):
    """The InterFormer predictor cannot be imported (not installed / not written yet)."""


def _predictor_module():
    try:
        from .. import predictor  # lazy: the predictor lives in another engineer's module
    except ImportError as e:
        raise ModelUnavailableError(
            f"the InterFormer predictor (model_export.predictor) cannot be imported: {e}"
        ) from e
    return predictor


def build_segmenter(
    model: str,
    checkpoint: str | None = None,
    zoom_in: bool = False,
    threads: int | None = None,
) -> InteractiveSegmenter:
    """Build the segmenter called ``model``.

    "sam-decoder" and "grabcut" are the baselines of ``baselines.py`` (``checkpoint`` and
    ``zoom_in`` do not apply to them); any other name ("default", "interformer-light", ...)
    goes to ``model_export.predictor.build_predictor(model, checkpoint, zoom_in, threads)``.
    Raises ``ModelUnavailableError`` when the predictor module cannot be imported and
    ``UnknownModelError`` when the predictor rejects the name with a KeyError.
    """
    if model == "sam-decoder":
        from .baselines import SamDecoderSegmenter

        return SamDecoderSegmenter(threads=threads)
    if model == "grabcut":
        from .baselines import GrabCutSegmenter

        return GrabCutSegmenter()
    predictor = _predictor_module()
    try:
        return predictor.build_predictor(model, checkpoint=checkpoint, zoom_in=zoom_in, threads=threads)
    except KeyError as e:
        raise UnknownModelError(f"unknown model {model!r}: {e}") from e
