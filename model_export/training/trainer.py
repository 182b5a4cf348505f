"""``interformer train``: decoder-side training on cached TinyViT embeddings (CPU or CUDA).

One iteration: a batch of objects -> pyramid (adapter, with gradients) -> click simulation on
detached features in eval mode -> training step on the final click map: NFL(decode) +
0.4 NFL(aux). Checkpoints are written atomically every ``ckpt_every`` iterations (model,
optimizer, iteration, RNG-free config) and a run resumes from ``<out>/last.pt``. The log is
JSON lines (``<out>/log.jsonl``): loss, lr, seconds per iteration and periodic validation NoC
on a held-out part of the *training* data (never the eval sets).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from .clicksim import simulate_clicks
from ..default_model import DEFAULT_CONFIG
from .losses import normalized_focal_loss
from .optim import build_optimizer, poly_lr, set_lr
from .samples import CachedEmbeddingDataset, discover_objects, split_holdout

AUX_WEIGHT = 0.4


@dataclass
class TrainConfig:
    config: str = DEFAULT_CONFIG
    data: list[str] = field(default_factory=list)
    cache: str = "var/cache/tinyvit"
    out: str = "runs/default"
    iters: int = 20000
    batch: int = 8
    crop: int | None = 320  # train on 320x320 windows of the 512 canvas (CPU budget); None = full canvas
    lr: float = 1e-4
    weight_decay: float = 0.05
    warmup: int = 1500
    workers: int = 1
    ckpt_every: int = 100
    val_every: int = 1000
    val_samples: int = 24
    val_clicks: int = 10
    seed: int = 0
    device: str = "cpu"
    threads: int | None = None
    init: str | None = None  # start from released weights (e.g. the committed default model)
    warm_start: str | None = None  # another architecture's weights: copy what fits, iteration 0


def _atomic_save(obj: dict, path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _decode_margin_fn(model, feats):
    def run(idx, maps):
        sub = [f[idx] for f in feats]
        ref = torch.from_numpy(maps.astype(np.float32))[:, None].to(sub[0].device)
        logits = model.decode(sub, ref)
        return logits[:, 1] - logits[:, 0]

    return run


def train_step(model, batch: dict, opt, rng: np.random.Generator, device: str) -> float:
    emb = batch["embedding"].to(device)
    img = batch["image"].to(device)
    gt = batch["gt"]
    model.train()
    feats = model.extract_features(emb, img)
    # Simulation: neck + head in eval mode (BN running stats, no dropout), no gradients.
    model.neck.eval(), model.decode_head.eval()
    maps = simulate_clicks(_decode_margin_fn(model, [f.detach() for f in feats]), gt.numpy(), rng)
    model.train()
    ref = torch.from_numpy(maps.astype(np.float32))[:, None].to(device)
    logits, aux = model.decode(feats, ref, return_aux=True)
    target = gt.to(device).long()
    loss = normalized_focal_loss(logits, target) + AUX_WEIGHT * normalized_focal_loss(aux, target)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return float(loss.detach())


def validate(model, objects, cache_dir: Path, n: int, max_clicks: int) -> dict:
    """NoC@85/90 on held-out training objects with the production predictor path."""
    from ..clicks import iou, next_click
    from ..predictor import InterFormerPredictor, TinyViTPipeline
    from .feature_cache import cache_path
    from ..data import load_rgb

    pred = InterFormerPredictor(model, TinyViTPipeline(model), name="val")
    nocs = {0.85: [], 0.90: []}
    ious1 = []
    step = max(1, len(objects) // n)  # spread over the held-out data sets, not the first one only
    for o in objects[::step][:n]:
        rgb, gt = load_rgb(o.image_path), o.load_mask()
        pred.set_image(rgb, embedding=np.load(cache_path(cache_dir, o.dataset, o.image_path.stem)).astype(np.float32))
        mask = np.zeros(gt.shape, bool)
        clicked, curve = [], []
        for _ in range(max_clicks):
            c = next_click(mask, gt, clicked)
            if c is None:
                curve.append(1.0)
                break
            clicked.append(c)
            mask = pred.add_click(c.x, c.y, c.positive)
            curve.append(iou(mask, gt))
        ious1.append(curve[0])
        for t in nocs:
            hit = [i for i, v in enumerate(curve) if v >= t]
            nocs[t].append(hit[0] + 1 if hit else max_clicks)
    model.train()
    return {"val_noc85": float(np.mean(nocs[0.85])), "val_noc90": float(np.mean(nocs[0.90])),
            "val_miou1": float(np.mean(ious1)), "val_n": len(ious1), "val_max_clicks": max_clicks}


def train(cfg: TrainConfig) -> Path:
    from ..configs import CONFIGS, build_model

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)

    objects = []
    for d in cfg.data:
        objects += discover_objects(Path(d))
    train_objs, held = split_holdout(objects)
    cache = Path(cfg.cache)
    model = build_model(CONFIGS[cfg.config]).to(cfg.device)
    opt = build_optimizer(model, cfg.lr, cfg.weight_decay)
    start = 0
    last = out / "last.pt"
    if last.exists():
        ck = torch.load(last, map_location=cfg.device, weights_only=False)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        start = ck["iteration"]
        rng = np.random.default_rng(cfg.seed + start)
        print(f"resumed from {last} at iteration {start}")
    elif cfg.init:
        from ..checkpoint import load_checkpoint

        load_checkpoint(model, cfg.init)
        meta = torch.load(cfg.init, map_location="cpu", weights_only=True).get("meta")
        start = int(json.loads(meta)["iteration"]) if meta else 0
        rng = np.random.default_rng(cfg.seed + start)
        print(f"initialised from {cfg.init} (iteration {start}; optimizer state starts fresh)")
    elif cfg.warm_start:
        from ..checkpoint import warm_start

        loaded, sliced, fresh = warm_start(model, cfg.warm_start)
        print(f"warm start from {cfg.warm_start}: {len(loaded)} tensors copied, {len(sliced)} sliced, "
              f"{len(fresh)} left as built")
        (out / "warm_start.json").write_text(
            json.dumps({"from": cfg.warm_start, "loaded": loaded, "sliced": sliced, "fresh": fresh}, indent=1))

    held = [o for o in CachedEmbeddingDataset(held, cache, use_flips=False).objects]
    (out / "config.json").write_text(json.dumps(asdict(cfg), indent=2))
    log = open(out / "log.jsonl", "a")
    it = start
    bar = tqdm(total=cfg.iters, initial=start, desc="train", unit="it")
    t_last = time.time()
    epoch = 0
    while it < cfg.iters:
        # Rebuilt every pass: picks up embeddings that a concurrent cache run has added since.
        ds = CachedEmbeddingDataset(train_objs, cache, crop=cfg.crop, seed=cfg.seed + start + epoch)
        if len(ds) < cfg.batch:
            raise SystemExit(f"only {len(ds)} training objects have cached embeddings under {cache}; "
                             "run `interformer cache-features` first")
        loader = DataLoader(ds, batch_size=cfg.batch, shuffle=True, num_workers=cfg.workers, drop_last=True)
        epoch += 1
        for batch in loader:
            if it >= cfg.iters:
                break
            lr = poly_lr(it, cfg.iters, cfg.lr, warmup=cfg.warmup)
            set_lr(opt, lr)
            loss = train_step(model, batch, opt, rng, cfg.device)
            it += 1
            now = time.time()
            rec = {"iter": it, "loss": round(loss, 5), "lr": lr, "sec": round(now - t_last, 3),
                   "objects": len(ds)}
            t_last = now
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}")
            if it % cfg.ckpt_every == 0 or it == cfg.iters:
                _atomic_save({"model": model.state_dict(), "optimizer": opt.state_dict(), "iteration": it,
                              "config": cfg.config}, last)
            if cfg.val_every and (it % cfg.val_every == 0 or it == cfg.iters) and held:
                model.eval()
                rec.update(validate(model, held, cache, cfg.val_samples, cfg.val_clicks))
                tqdm.write(json.dumps(rec))
            log.write(json.dumps(rec) + "\n")
            log.flush()
    bar.close()
    return last
