"""Encoder outputs computed once and kept on disk, so decoder training with a frozen encoder
runs fast on a CPU.

Layout: ``<cache>/<dataset>/<image stem>.npy`` holds the TinyViT embedding (256, 64, 64) as
float16 for the whole image; with ``flips`` the horizontally mirrored image is cached too, as
``<image stem>__flip.npy``. Writing goes through a temporary file and a
rename, so an interrupted run never leaves a truncated entry and simply resumes.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..data import IMAGE_EXTENSIONS, load_rgb


def cache_path(cache_dir: Path, dataset: str, image_stem: str) -> Path:
    return cache_dir / dataset / f"{image_stem}.npy"


def build_cache(data_dirs: list[Path], cache_dir: Path, threads: int | None = None, flips: bool = False) -> int:
    """Encode every image (view) of ``data_dirs`` not yet in the cache; returns how many were added."""
    from ..tinyvit_encoder import TinyViTEncoder

    enc = TinyViTEncoder(threads=threads)
    todo: list[tuple[str, Path, bool]] = []
    for flip in (False, True) if flips else (False,):
        for d in data_dirs:
            images = sorted({p for p in (d / "images").iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS})
            for img in images:
                if not cache_path(cache_dir, d.name, img.stem + ("__flip" if flip else "")).exists():
                    todo.append((d.name, img, flip))
    added = 0
    for dataset, img_path, flip in tqdm(todo, desc="encoding", unit="img"):
        out = cache_path(cache_dir, dataset, img_path.stem + ("__flip" if flip else ""))
        out.parent.mkdir(parents=True, exist_ok=True)
        rgb = load_rgb(img_path)
        if flip:
            rgb = np.ascontiguousarray(rgb[:, ::-1])
        emb = enc.encode(rgb).astype(np.float16)
        tmp = out.with_suffix(".tmp.npy")
        np.save(tmp, emb)
        os.replace(tmp, out)
        added += 1
    return added


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("data_dirs", nargs="+", type=Path)
    ap.add_argument("--cache", type=Path, required=True)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--flips", action="store_true")
    a = ap.parse_args()
    print(build_cache(a.data_dirs, a.cache, a.threads, a.flips), "images encoded")
