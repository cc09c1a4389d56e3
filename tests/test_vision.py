"""Vision transformers (ViT, DeiT) through every path: tiny random models from transformers' own config classes,
calibrated on an image folder made here (through the checkpoint's image processor), exported, and loaded as the class
they came from, with the same bits on torch and on the simulator in every quantized layer (the patch embedding, a
convolution, quantized as the linear layer it is) and in the outputs; eval --images against a direct count."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from folding import shifted_layers_feed_unfolded_inputs
from PIL import Image
from tiny_models import tiny_vision
from torch import nn
from transformers import ViTImageProcessor

import fp4sim
from fp4sim.cli import main
from fp4sim.e2e.simulate import AgreementMonitor
from fp4sim.models.checkpoint import load_pretrained
from fp4sim.quant.config import QuantConfig
from fp4sim.quant.export import load_export
from fp4sim.quant.patches import PatchEmbeddingLinear, is_patch_conv, linear_weight
from fp4sim.quant.quantize import quantize_checkpoint

FAST = {"grid_points": 3, "rounds": 1, "calib_samples": 6, "search_tokens": 64}


def bits(t: torch.Tensor) -> np.ndarray:
    return t.detach().float().numpy().view(np.uint32)


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An ImageFolder of random images (two classes, PNG and JPEG, sizes other than the model's 32 x 32)."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(7)
    for name in ("cat", "dog"):
        (root / name).mkdir()
        for index in range(4):
            pixels = rng.integers(0, 256, (40 + 4 * index, 48, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{index}.{'png' if index % 2 else 'jpg'}")
    return root


def save_vision(path: Path, model_type: str, architecture: str) -> Path:
    tiny_vision(model_type, architecture).save_pretrained(path)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(path)
    return path


def test_patch_embedding_is_a_linear_layer_on_patches() -> None:
    """im2col: the patch convolution equals a linear layer with its flattened weight on the rows of patches."""
    torch.manual_seed(1)
    conv = nn.Conv2d(3, 16, kernel_size=(4, 8), stride=(4, 8))
    assert is_patch_conv(conv) and not is_patch_conv(nn.Conv2d(3, 16, 3, stride=1))
    linear = nn.Linear(3 * 4 * 8, 16)
    linear.weight.data, linear.bias.data = linear_weight(conv).detach().clone(), conv.bias.detach().clone()
    images = torch.randn(2, 3, 16, 32)
    with torch.no_grad():
        assert torch.allclose(PatchEmbeddingLinear(conv.kernel_size, linear)(images), conv(images), atol=1e-5)


CASES = [
    ("vit", "ViTForImageClassification", {"method": "fpq", "quantize_attention": True}),
    ("vit", "ViTModel", {"method": "nvfp4"}),
    ("deit", "DeiTForImageClassificationWithTeacher", {"method": "minmax", "quantize_attention": True}),
]


@pytest.mark.parametrize(("model_type", "architecture", "settings"), CASES, ids=[a for _, a, _ in CASES])
def test_vision_exports_run_the_same_bits_on_torch_and_simulator(
    tmp_path: Path, images: Path, model_type: str, architecture: str, settings: dict
) -> None:
    """Every linear layer and the patch embedding are quantized; the export loads as the class it came from and
    gives the same bits on both backends in every layer and in the output."""
    checkpoint = save_vision(tmp_path / "ckpt", model_type, architecture)
    out = quantize_checkpoint(checkpoint, str(images), QuantConfig(**settings, **FAST), tmp_path / "q", progress=False)
    original, _ = load_pretrained(checkpoint)
    on_torch, _, metadata = load_export(out)
    on_simulator = fp4sim.load_quantized(out, backend="simulator")
    assert type(on_torch) is type(on_simulator) is type(original) and type(original).__name__ == architecture
    linears = {n for n, m in original.named_modules() if isinstance(m, nn.Linear | nn.Conv2d)}
    attention = {n for n, m in original.named_modules() if hasattr(m, "scaling")}
    assert set(metadata["modules"]) == linears | (attention if settings.get("quantize_attention") else set())
    monitor = AgreementMonitor().attach(on_simulator)
    pixels = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ours, theirs = on_torch(pixel_values=pixels), on_simulator(pixel_values=pixels)
    field = "last_hidden_state" if architecture.endswith("Model") else "logits"
    assert np.array_equal(bits(ours[field]), bits(theirs[field]))
    patch = next(n for n in linears if n.endswith("projection"))
    matmuls = {f"{n}.{which}" for n in attention for which in ("scores", "context")}
    quantized_matmuls = matmuls if settings.get("quantize_attention") else set()
    assert set(monitor.layers) == {n for n in linears if n != patch} | {f"{patch}.linear"} | quantized_matmuls
    assert all(layer.outputs and layer.identical == layer.outputs for layer in monitor.layers.values())


def test_folded_inputs_are_the_unfolded_per_channel_ones(tmp_path: Path, images: Path) -> None:
    """FPQ's per-channel activation bias, folded into shifts: every layer of a ViT export, the patch embedding
    included, feeds its array the bits the unfolded per-channel quantizer gives, and some layers shift."""
    checkpoint = save_vision(tmp_path / "ckpt", "vit", "ViTForImageClassification")
    out = quantize_checkpoint(
        checkpoint, str(images), QuantConfig(method="fpq", **FAST), tmp_path / "q", progress=False
    )
    model, _, _ = load_export(out)
    pixels = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    assert shifted_layers_feed_unfolded_inputs(model, lambda: model(pixel_values=pixels)) > 0


def test_image_classifier_accuracy_and_agreement(tmp_path: Path, images: Path, capsys: pytest.CaptureFixture) -> None:
    """eval --images prints the top-1 accuracy against the folder's classes and the agreement with FP32 that
    images run one at a time through the image processor give."""
    source = save_vision(tmp_path / "ckpt", "vit", "ViTForImageClassification")
    out = quantize_checkpoint(source, str(images), QuantConfig(method="nvfp4"), tmp_path / "q", progress=False)
    assert main(["eval", "--quantized", str(out), "--images", str(images), "--batch-size", "3"]) == 0
    printed = capsys.readouterr().out
    quantized, (fp32, processor) = fp4sim.load_quantized(out), load_pretrained(source)
    ours, theirs, truth = [], [], []
    with torch.no_grad():
        for path in sorted(images.rglob("*.*")):
            pixels = processor(images=Image.open(path).convert("RGB"), return_tensors="pt")["pixel_values"]
            ours.append(int(quantized(pixel_values=pixels).logits.argmax()))
            theirs.append(int(fp32(pixel_values=pixels).logits.argmax()))
            truth.append(fp32.config.label2id[path.parent.name])
    accuracy = np.mean(np.array(ours) == np.array(truth))
    agreement = np.mean(np.array(ours) == np.array(theirs))
    assert f"accuracy {accuracy:.4f} over 8 examples" in printed and f"agreement with FP32 {agreement:.4f}" in printed


def test_bad_images_fail_clearly_and_write_nothing(tmp_path: Path, images: Path, capsys: pytest.CaptureFixture) -> None:
    """An image that does not decode, a directory without images, images outside class folders: a message naming
    the file or directory, no export."""
    source = save_vision(tmp_path / "ckpt", "vit", "ViTForImageClassification")
    broken = tmp_path / "broken" / "cat"
    broken.mkdir(parents=True)
    (broken / "0.png").write_bytes(b"not a png")
    argv = ["quantize", "--model", str(source), "--method", "minmax", "--out", str(tmp_path / "q"), "--calib"]
    assert main([*argv, str(broken.parent)]) == 2
    assert "0.png cannot be read as an image" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main([*argv, str(tmp_path / "empty")]) == 2
    assert "holds no image" in capsys.readouterr().err
    assert not (tmp_path / "q").exists()
    loose = tmp_path / "loose"
    loose.mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(loose / "a.png")
    assert main(["eval", "--model", str(source), "--images", str(loose)]) == 2
    assert "is not in a class subdirectory" in capsys.readouterr().err
    text = tmp_path / "t.txt"
    text.write_text("words\n")
    assert main(["act-ranges", "--model", str(source), "--text", str(text), "--layer", "classifier"]) == 2
    assert "a vit model takes images" in capsys.readouterr().err
