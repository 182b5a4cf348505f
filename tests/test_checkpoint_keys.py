"""State-dict layout of the faithful models vs the official one, and checkpoint loading/validation.

keys_light.tsv / keys_tiny.tsv (official parity fixture) list the complete state_dict of the
authors' InterFormer-Light / -Tiny: the full-size models are built on the meta device (no memory)
and must match them row for row (key, shape, dtype, order).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from model_export.checkpoint import CheckpointError, checkpoint_filter_fn, load_checkpoint, read_state_dict
from model_export.configs import CONFIGS, build_model
from model_export.modeling.vit import beit_relative_position_index, resample_abs_pos_embed



def _read_tsv(path: Path) -> list[tuple[str, str, str, int]]:
    lines = path.read_text().splitlines()
    assert lines[0].split("\t") == ["key", "shape", "dtype", "numel"]
    rows = []
    for line in lines[1:]:
        k, s, d, n = line.split("\t")
        rows.append((k, s, d, int(n)))
    return rows


def _rows(model: torch.nn.Module) -> list[tuple[str, str, str, int]]:
    out = []
    for k, v in model.state_dict().items():
        shape = "x".join(str(s) for s in v.shape) if v.dim() else "scalar"
        out.append((k, shape, str(v.dtype).removeprefix("torch."), v.numel()))
    return out


@pytest.mark.parametrize(
    "name, tsv, n_params, n_elems",
    [
        ("interformer-light", "keys_light.tsv", 97_373_348, 109_982_525),
        ("interformer-tiny", "keys_tiny.tsv", 324_557_316, 349_773_993),
    ],
)
def test_full_model_state_dict_matches_official(parity_dir, name, tsv, n_params, n_elems):
    with torch.device("meta"):
        model = build_model(CONFIGS[name])
    ours, ref = _rows(model), _read_tsv(parity_dir / tsv)
    missing = [r[0] for r in ref if r[0] not in {o[0] for o in ours}]
    extra = [o[0] for o in ours if o[0] not in {r[0] for r in ref}]
    assert not missing and not extra, f"missing {missing[:5]} extra {extra[:5]}"
    diff = [(o, r) for o, r in zip(ours, ref) if o != r]
    assert not diff, f"{len(diff)} rows differ, first: {diff[:3]}"
    assert ours == ref  # same rows, same order
    assert {r[2] for r in ref} == {"float32", "int64"}
    assert sum(p.numel() for p in model.parameters()) == n_params
    assert sum(r[3] for r in ours) == n_elems


def test_small_models_state_dict_matches_fixture_json(parity_dir):
    import json

    for name, js in (("small-light", "small_light_config.json"), ("small-tiny", "small_tiny_config.json")):
        with torch.device("meta"):
            model = build_model(CONFIGS[name])
        ref = json.loads((parity_dir / js).read_text())["state_dict"]  # rows [key, shape, dtype]
        ref_rows = [(k, tuple(shape), dtype) for k, shape, dtype in ref]
        ours = [(k, tuple(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in model.state_dict().items()]
        assert ours == ref_rows, name


def test_relative_position_index_is_official(parity_dir):
    ref = np.load(parity_dir / "small_light_io.npz")["relative_position_index"].astype(np.int64)
    assert torch.equal(beit_relative_position_index((32, 32)), torch.from_numpy(ref))


# ----- loading -----
@pytest.fixture(scope="module")
def small_light_sd(parity_dir) -> dict[str, torch.Tensor]:
    return read_state_dict(parity_dir / "small_light.pth")


@pytest.fixture(scope="module")
def small_light_model() -> torch.nn.Module:
    return build_model(CONFIGS["small-light"])


def test_fixture_files_are_plain_state_dicts(parity_dir):
    for f in ("small_light.pth", "small_tiny_refine.pth"):
        obj = torch.load(parity_dir / f, map_location="cpu", weights_only=True)
        assert isinstance(obj, dict) and all(isinstance(v, torch.Tensor) for v in obj.values())


def test_filter_fills_index_buffers_and_loads(small_light_sd, small_light_model):
    assert not any(k.endswith("relative_position_index") for k in small_light_sd)
    sd = checkpoint_filter_fn(small_light_sd, small_light_model)
    assert list(sd) == list(small_light_model.state_dict())
    small_light_model.load_state_dict(sd, strict=True)


def test_filter_accepts_mmcv_runner_dict_with_module_prefix(small_light_sd, small_light_model):
    ck = {"meta": {"iter": 320000}, "state_dict": {"module." + k: v for k, v in small_light_sd.items()}}
    sd = checkpoint_filter_fn(ck, small_light_model)
    assert torch.equal(sd["backbone.pos_embed"], small_light_sd["backbone.pos_embed"])


def test_filter_resizes_pos_embed_from_mae_grid(small_light_sd, small_light_model):
    mae = torch.randn(1, 1 + 14 * 14, 64)
    sd = checkpoint_filter_fn({**small_light_sd, "backbone.pos_embed": mae}, small_light_model)
    want = resample_abs_pos_embed(mae, (32, 32), (14, 14), interpolation="bicubic")
    assert sd["backbone.pos_embed"].shape == (1, 1025, 64)
    assert torch.equal(sd["backbone.pos_embed"], want)
    assert torch.equal(sd["backbone.pos_embed"][:, 0], mae[:, 0])  # cls entry kept


def test_filter_drops_aux_head_only_when_model_has_none(small_light_sd):
    model = build_model(CONFIGS["small-light"])
    model.auxiliary_head = None
    sd = checkpoint_filter_fn(small_light_sd, model)
    assert not any(k.startswith("auxiliary_head.") for k in sd)
    model.load_state_dict(sd, strict=True)
    with pytest.raises(CheckpointError, match="unexpected"):
        checkpoint_filter_fn(small_light_sd, model, drop_aux_head=False)


def test_filter_reports_missing_key(small_light_sd, small_light_model):
    bad = dict(small_light_sd)
    del bad["neck.norm2.weight"]
    with pytest.raises(CheckpointError, match=r"1 missing keys: neck\.norm2\.weight") as e:
        checkpoint_filter_fn(bad, small_light_model)
    assert isinstance(e.value, ValueError)


def test_filter_reports_unexpected_key(small_light_sd, small_light_model):
    bad = {**small_light_sd, "neck.bogus.weight": torch.zeros(3)}
    with pytest.raises(CheckpointError, match=r"1 unexpected keys: neck\.bogus\.weight"):
        checkpoint_filter_fn(bad, small_light_model)


def test_filter_reports_misshaped_key(small_light_sd, small_light_model):
    bad = {**small_light_sd, "decode_head.conv_seg.weight": torch.zeros(3, 64, 1, 1)}
    with pytest.raises(CheckpointError, match=r"1 keys with mismatched shapes: decode_head\.conv_seg\.weight "
                                              r"\(checkpoint \(3, 64, 1, 1\), model \(2, 64, 1, 1\)\)"):
        checkpoint_filter_fn(bad, small_light_model)


def test_filter_rejects_wrong_relative_position_index(small_light_sd, small_light_model):
    k = "backbone.layers.0.attn.relative_position_index"
    bad = {**small_light_sd, k: torch.zeros(1025, 1025, dtype=torch.int64)}
    with pytest.raises(CheckpointError, match="relative_position_index"):
        checkpoint_filter_fn(bad, small_light_model)


def test_light_weights_into_tiny_config_fail_clearly(parity_dir):
    model = build_model(CONFIGS["small-tiny"])
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(model, parity_dir / "small_light.pth")
    msg = str(e.value)
    assert "small_light.pth" in msg
    assert "224 missing keys: neck.refine_stages.0.blocks.0." in msg
    assert "unexpected" not in msg and "mismatched" not in msg


def test_tiny_small_loads_from_two_files(parity_dir, small_light_sd):
    model = build_model(CONFIGS["small-tiny"])
    load_checkpoint(model, [parity_dir / "small_light.pth", parity_dir / "small_tiny_refine.pth"])
    sd = model.state_dict()
    refine = read_state_dict(parity_dir / "small_tiny_refine.pth")
    for k, v in list(small_light_sd.items()) + list(refine.items()):
        assert torch.equal(sd[k], v), k


def test_missing_file_is_a_checkpoint_error(tmp_path, small_light_model):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(small_light_model, tmp_path / "nope.pth")
