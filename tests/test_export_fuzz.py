"""The export loader under damage (issue 19).

Real exports of a small model (every module kind: LLM-FP4 linear, embedding and attention; MXFP4 and NVFP4 block
linear and block embedding) are damaged the ways files are: truncated or bit-flipped tensor files, metadata with
missing, extra or mistyped fields, a newer version, codes and scales out of range, NaN / negative / zero / Inf scales,
tensors of another dtype or shape, a config.json that disagrees. Each load must either raise ExportError naming the
export, or give a model whose logits are the undamaged export's, bit for bit: never another exception type, never a
silently different model.
"""

from __future__ import annotations

import json
import os
import shutil
from datetime import timedelta
from pathlib import Path

import pytest
import torch
from hypothesis import given, seed, settings
from hypothesis import strategies as st
from safetensors.torch import load_file, save_file

from fp4sim.quant.config import QuantConfig
from fp4sim.quant.export import METADATA_FILE, TENSORS_FILE, ExportError, load_export
from fp4sim.quant.export.store import sha256
from fp4sim.quant.quantize import quantize_checkpoint

FUZZ_SEED = 19
FUZZ_CASES = 300  # damaged exports per run, CI included
FAST = {"grid_points": 5, "rounds": 1, "calib_samples": 2, "calib_length": 32}
CALIB = (Path(__file__).resolve().parents[1] / "models" / "shakespeare" / "valid.txt").read_text(encoding="utf-8")
CALIB = CALIB[:20000]
IDS = torch.arange(3, 35)[None]


@pytest.fixture(scope="module")
def originals(checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> list[tuple[Path, dict, torch.Tensor]]:
    """(export, its tensors, its logits on IDS) for fpq with quantized attention, nvfp4 and mxfp4."""
    root = tmp_path_factory.mktemp("originals")
    configs = {
        "fpq": QuantConfig(method="fpq", quantize_attention=True, **FAST),
        "nvfp4": QuantConfig(method="nvfp4", **FAST),
        "mxfp4": QuantConfig(method="mxfp4", bits="4/4/16", **FAST),
    }
    found = []
    for name, config in configs.items():
        out = quantize_checkpoint(checkpoint, CALIB, config, root / name, progress=False)
        model, _, _ = load_export(out)
        with torch.no_grad():
            found.append((out, load_file(out / TENSORS_FILE), model(IDS).logits))
    return found


def _replace(path: Path, data: bytes) -> None:
    path.unlink()  # the copy's files are hard links to the original's: never write through them
    path.write_bytes(data)


def _rewrite_tensors(target: Path, tensors: dict) -> None:
    """New tensors with a checksum that matches them: damage only the loader's own checks can find."""
    (target / TENSORS_FILE).unlink()
    save_file(tensors, target / TENSORS_FILE)
    metadata = json.loads((target / METADATA_FILE).read_text())
    metadata["tensors_sha256"] = sha256(target / TENSORS_FILE)
    _replace(target / METADATA_FILE, json.dumps(metadata).encode())


def _json_paths(value, prefix=()) -> list[tuple]:
    """Every key path of a JSON document's objects."""
    paths = []
    if isinstance(value, dict):
        for key, item in value.items():
            paths.append((*prefix, key))
            paths.extend(_json_paths(item, (*prefix, key)))
    return paths


def _at(document: dict, path: tuple) -> dict:
    for key in path[:-1]:
        document = document[key]
    return document


OTHER_VALUES = [None, "x", "", 1.5, -1, 0, True, [], {}, [1, 2, 3], {"name": "E2M1"}, 2**40]
SCALE_VALUES = [float("nan"), float("inf"), -1.0, 0.0, -0.0]
DTYPES = [torch.float16, torch.bfloat16, torch.float64, torch.int8, torch.int32, torch.uint8, torch.float32]


def damage(draw, export: Path, tensors: dict, target: Path) -> str:
    """Apply one drawn damage to `target` (a hard-linked copy of `export`); return what was done."""
    kind = draw(st.sampled_from(["truncate", "flip", "json_drop", "json_extra", "json_mistype", "json_text",
                                  "version", "scale", "dtype", "shape", "drop_tensor", "range", "config",
                                  "file_flip"]))  # fmt: skip
    tensor_file, meta_file = target / TENSORS_FILE, target / METADATA_FILE
    metadata = json.loads(meta_file.read_text())
    keys = sorted(tensors)
    if kind in ("truncate", "flip"):
        data = bytearray(tensor_file.read_bytes())
        at = draw(st.integers(0, len(data) - 1))
        if kind == "truncate":
            data = data[:at]
        else:
            data[at] ^= 1 << draw(st.integers(0, 7))
        _replace(tensor_file, bytes(data))
        if kind == "truncate" and draw(st.booleans()):  # a checksum that matches: the safetensors reader must cope
            metadata["tensors_sha256"] = sha256(tensor_file)
            _replace(meta_file, json.dumps(metadata).encode())
        return f"{kind} at byte {at}"
    if kind.startswith("json") or kind == "version":
        paths = _json_paths(metadata)
        path = draw(st.sampled_from(paths))
        if kind == "json_drop":
            del _at(metadata, path)[path[-1]]
        elif kind == "json_extra":
            _at(metadata, path)["unexpected_field"] = draw(st.sampled_from(OTHER_VALUES))
        elif kind == "json_mistype":
            _at(metadata, path)[path[-1]] = draw(st.sampled_from(OTHER_VALUES))
        elif kind == "version":
            metadata["version"] = draw(st.sampled_from([0, 3, 99, -1, "2", 2.0]))
        text = json.dumps(metadata)
        if kind == "json_text":
            text = text[: draw(st.integers(0, len(text) - 1))]
        _replace(meta_file, text.encode())
        return f"{kind} at {'.'.join(map(str, path))}"
    if kind == "file_flip":  # the config or a tokenizer file, one bit
        path = draw(st.sampled_from(sorted(p for p in target.iterdir() if p.name not in (TENSORS_FILE, METADATA_FILE))))
        data = bytearray(path.read_bytes())
        at = draw(st.integers(0, len(data) - 1))
        data[at] ^= 1 << draw(st.integers(0, 7))
        _replace(path, bytes(data))
        return f"bit flip in {path.name} at byte {at}"
    if kind == "config":
        config = json.loads((target / "config.json").read_text())
        field = draw(st.sampled_from(["hidden_size", "intermediate_size", "num_hidden_layers", "vocab_size"]))
        config[field] = config[field] + draw(st.sampled_from([-1, 1, 16]))
        _replace(target / "config.json", json.dumps(config).encode())
        return f"config.json {field}"
    edited = dict(tensors)
    if kind == "scale":
        key = draw(st.sampled_from([k for k in keys if k.endswith("_scale")]))
        value = edited[key].clone()
        value.view(-1)[draw(st.integers(0, value.numel() - 1))] = draw(st.sampled_from(SCALE_VALUES))
        edited[key] = value
    elif kind == "dtype":
        key = draw(st.sampled_from(keys))
        dtype = draw(st.sampled_from([d for d in DTYPES if d != edited[key].dtype]))
        edited[key] = edited[key].to(dtype)
    elif kind == "shape":
        key = draw(st.sampled_from([k for k in keys if edited[k].ndim >= 1 and edited[k].shape[0] > 1]))
        edited[key] = edited[key][:-1] if draw(st.booleans()) else torch.cat([edited[key], edited[key][:1]])
    elif kind == "drop_tensor":
        key = draw(st.sampled_from(keys))
        del edited[key]
    else:  # codes out of range: shifts past the port, NVFP4 block scales with the sign bit or the NaN code
        candidates = [k for k in keys if k.endswith("input_shift")]
        if metadata["quant_config"]["method"] == "nvfp4":
            candidates += [k for k in keys if k.endswith("block_scales")]
        if not candidates:  # MXFP4 weight-only: every byte of every tensor is a valid code; damage a scale instead
            candidates = [k for k in keys if k.endswith("_scale")]
        key = draw(st.sampled_from(candidates))
        value = edited[key].clone()
        if value.dtype == torch.uint8:  # a shift past any port, or an E4M3 scale with the NaN code or the sign bit
            out_of_range = [0x10, 0x7F, 0xFF] if key.endswith("input_shift") else [0x7F, 0x80, 0xFF]
            value.view(-1)[draw(st.integers(0, value.numel() - 1))] = draw(st.sampled_from(out_of_range))
        else:
            value.view(-1)[draw(st.integers(0, value.numel() - 1))] = draw(st.sampled_from(SCALE_VALUES))
        edited[key] = value
    _rewrite_tensors(target, edited)
    return f"{kind} on {key}"


def test_damaged_exports_raise_export_error_or_load_unchanged(originals, tmp_path: Path) -> None:
    outcomes = {"refused": 0, "unchanged": 0}

    @seed(FUZZ_SEED)
    @settings(max_examples=FUZZ_CASES, derandomize=False, database=None, deadline=timedelta(seconds=30))
    @given(data=st.data())
    def check(data) -> None:
        export, tensors, logits = originals[data.draw(st.integers(0, len(originals) - 1), label="export")]
        target = tmp_path / f"case-{len(os.listdir(tmp_path))}"
        shutil.copytree(export, target, copy_function=os.link)
        what = damage(data.draw, export, tensors, target)
        try:
            model, _, _ = load_export(target)
        except ExportError as err:
            assert str(target) in str(err), f"{what}: the error does not name the export: {err}"
            outcomes["refused"] += 1
            return
        with torch.no_grad():
            got = model(IDS).logits
        assert torch.equal(got.view(torch.int32), logits.view(torch.int32)), f"{what}: loaded a different model"
        outcomes["unchanged"] += 1

    check()
    assert sum(outcomes.values()) >= FUZZ_CASES and min(outcomes.values()) > 0, outcomes


def _edit_json(path: Path, edit) -> None:
    document = json.loads(path.read_text())
    _replace(path, json.dumps(edit(document) or document).encode())


def test_damage_found_in_review(originals, tmp_path: Path) -> None:
    """Damage a reviewer found loading silently or raising another exception type; each must be an ExportError."""
    export, tensors, _ = originals[0]  # fpq: LLM-FP4 linear, embedding and attention
    layer = "model.layers.0.self_attn.q_proj"
    cases = {
        "weight-only by metadata": (METADATA_FILE, lambda m: m["modules"][layer].update(input_format=None)),
        "infinite format field": (METADATA_FILE, lambda m: m["modules"][layer]["weight_format"].update(ebits=1e999)),
        "deep metadata": (METADATA_FILE, None),
        "config eps": ("config.json", lambda c: c.update(rms_norm_eps=1e-4)),
        "config activation": ("config.json", lambda c: c.update(hidden_act="gelu")),
        "config rope": ("config.json", lambda c: c.update(rope_theta=500.0)),
        "config not an object": ("config.json", lambda c: []),
        "config foreign": ("config.json", lambda c: c.update(model_type="x", architectures=[1])),
        "deep config": ("config.json", None),
    }
    for i, (name, edit) in enumerate(cases.values()):
        target = tmp_path / f"review-{i}"
        shutil.copytree(export, target, copy_function=os.link)
        if edit is None:
            _replace(target / name, b"[" * 100_000)
        else:
            _edit_json(target / name, edit)
        with pytest.raises(ExportError, match=str(target)):
            load_export(target)
    stray = tmp_path / "stray-bias"  # a bias tensor the metadata says the layer has not
    shutil.copytree(export, stray, copy_function=os.link)
    _rewrite_tensors(stray, {**tensors, f"{layer}.bias": torch.zeros(tensors[f"{layer}.weight_scale"].shape)})
    with pytest.raises(ExportError, match="does not account for"):
        load_export(stray)
