"""GGUF input: a float32 GGUF written the llama.cpp way (q/k rows permuted for RoPE, llama.cpp tensor names, a "gpt2"
tokenizer in the metadata) loads as the model it was written from, bit for bit, through the Python API and through
every CLI subcommand that takes --model; its export is the checkpoint directory's, byte for byte."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from gguf_files import write_llama_gguf
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from fp4sim.cli import main
from fp4sim.models.checkpoint import DEFAULT_MODEL, check_checkpoint, load_pretrained
from fp4sim.quant.export import METADATA_FILE, TENSORS_FILE

TEXT = (DEFAULT_MODEL.parent / "shakespeare" / "valid.txt").read_text(encoding="utf-8")[:12000]


def bits(t: torch.Tensor) -> np.ndarray:
    return t.detach().float().numpy().view(np.uint32)


@pytest.fixture(scope="module")
def gguf_file(checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's tiny tied-embedding LLaMA checkpoint as a float32 GGUF file."""
    model = AutoModelForCausalLM.from_pretrained(checkpoint)
    return write_llama_gguf(model, checkpoint, tmp_path_factory.mktemp("gguf") / "tiny-f32.gguf")


def test_a_gguf_file_loads_as_the_model_it_was_written_from(checkpoint: Path, gguf_file: Path) -> None:
    original, reference_tokenizer = load_pretrained(checkpoint)
    model, tokenizer = load_pretrained(gguf_file)
    assert model.config.model_type == "llama" and model.config.tie_word_embeddings
    assert model.hf_quantizer is None and "quantization_config" not in model.config.to_dict()
    expected = original.state_dict()
    assert model.state_dict().keys() == expected.keys()
    assert all(torch.equal(value, expected[name]) for name, value in model.state_dict().items())
    ids = torch.tensor([tokenizer(TEXT[:400])["input_ids"]])
    assert ids[0].tolist() == reference_tokenizer(TEXT[:400])["input_ids"]
    with torch.no_grad():
        assert np.array_equal(bits(model(ids).logits), bits(original(ids).logits))
    in_directory, _ = load_pretrained(gguf_file.parent, gguf_file=gguf_file.name, dtype="bfloat16")
    assert in_directory.model.norm.weight.dtype == torch.bfloat16
    assert torch.equal(in_directory.model.norm.weight, original.model.norm.weight.bfloat16())


def test_cli_quantize_eval_simulate_and_act_ranges_take_a_gguf_file(
    checkpoint: Path, gguf_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    text = tmp_path / "text.txt"
    text.write_text(TEXT)
    quantize = ["quantize", "--calib", str(text), "--method", "minmax", "--calib-length", "32", "--calib-samples", "2"]
    assert main([*quantize, "--model", str(gguf_file), "--out", str(tmp_path / "from-gguf")]) == 0
    assert main([*quantize, "--model", str(checkpoint), "--out", str(tmp_path / "from-dir")]) == 0
    from_gguf, from_dir = (
        load_file(tmp_path / "from-gguf" / TENSORS_FILE),
        load_file(tmp_path / "from-dir" / TENSORS_FILE),
    )
    assert from_gguf.keys() == from_dir.keys() and all(torch.equal(from_gguf[k], from_dir[k]) for k in from_dir)
    metadata = json.loads((tmp_path / "from-gguf" / METADATA_FILE).read_text())
    assert metadata["source_model"] == str(gguf_file)
    assert "quantization_config" not in json.loads((tmp_path / "from-gguf" / "config.json").read_text())
    capsys.readouterr()

    window = ["--text", str(text), "--context", "64"]
    assert main(["eval", "--model", str(gguf_file.parent), "--gguf-file", gguf_file.name, *window]) == 0
    assert main(["eval", "--model", str(checkpoint), *window]) == 0
    gguf_line, dir_line = capsys.readouterr().out.splitlines()
    assert gguf_line.split(" over ")[0] == dir_line.split(" over ")[0]  # the same FP32 perplexity

    report = tmp_path / "report"
    simulate = ["simulate", "--quantized", str(tmp_path / "from-gguf"), *window, "--tokens", "300"]
    assert main([*simulate, "--out", str(report)]) == 0  # FP32 from the export's source_model, the GGUF file
    assert json.loads((report / "report.json").read_text())["perplexity"]["fp32"] is not None
    plot = tmp_path / "ranges.png"
    assert (
        main(["act-ranges", "--model", str(gguf_file), "--text", str(text), "--tokens", "300", "--out", str(plot)]) == 0
    )
    assert plot.read_bytes()[:4] == b"\x89PNG"


def test_gguf_input_errors(gguf_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    with pytest.raises(FileNotFoundError, match="GGUF file"):
        check_checkpoint(tmp_path / "missing.gguf")
    with pytest.raises(FileNotFoundError, match="GGUF file"):
        check_checkpoint(gguf_file.parent, gguf_file="other.gguf")
    (tmp_path / "calib.txt").write_text(TEXT)
    argv = [
        "quantize",
        "--model",
        str(gguf_file.parent),
        "--gguf-file",
        "other.gguf",
        "--calib",
        str(tmp_path / "calib.txt"),
    ]
    argv += ["--out", str(tmp_path / "q")]
    assert main(argv) == 2 and "other.gguf' does not exist" in capsys.readouterr().err
    assert not (tmp_path / "q").exists()
    monkeypatch.setitem(sys.modules, "gguf", None)  # not installed
    with pytest.raises(ValueError, match=r"pip install 'fp4sim\[gguf\]'"):
        check_checkpoint(gguf_file)
