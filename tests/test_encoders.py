"""Text encoders (models.checkpoint.TEXT_ENCODER_TYPES) through every path: tiny random BERT-shaped models of each
family and head, from transformers' own config classes, quantize on padded sentences, export, and load as the class
they came from, running with the same bits on torch and on the simulator in every quantized layer and in the outputs;
padding feeds no calibration statistic; sentence-transformers directories; fp4sim eval's encoder metrics against
direct counts."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from folding import shifted_layers_feed_unfolded_inputs
from tiny_models import tiny_encoder, wordpiece_tokenizer
from torch import nn

import fp4sim
from fp4sim.cli import main
from fp4sim.e2e.simulate import AgreementMonitor
from fp4sim.models.checkpoint import DEFAULT_CORPUS, load_pretrained
from fp4sim.quant.attention import use_fp4sim_attention
from fp4sim.quant.calibrate import calibrate_model, layer_inputs
from fp4sim.quant.config import QuantConfig
from fp4sim.quant.export import load_export
from fp4sim.quant.fakequant import max_to_scale
from fp4sim.quant.quantize import quantize_checkpoint

FAST = {"grid_points": 3, "rounds": 1, "calib_samples": 8, "calib_length": 40, "search_tokens": 64}
MAX_LENGTH = 48  # the tiny tokenizer's limit, within the tiny models' 64 positions
LINES = [line for line in (DEFAULT_CORPUS / "valid.txt").read_text(encoding="utf-8").splitlines() if line.strip()]
CALIB_TEXT = "\n".join(LINES[:40])
SENTENCES = ["To be, or not to be.", "That is the question whether tis nobler in the mind", "Ay."]  # three lengths


def bits(t: torch.Tensor) -> np.ndarray:
    return t.detach().float().numpy().view(np.uint32)


def save_encoder(path: Path, model_type: str, architecture: str) -> Path:
    """The tiny encoder with the WordPiece tokenizer, saved as a checkpoint directory."""
    tiny_encoder(model_type, architecture).save_pretrained(path)
    wordpiece_tokenizer(path, MAX_LENGTH).save_pretrained(path)
    return path


def padded(tokenizer) -> dict[str, torch.Tensor]:
    return dict(tokenizer(SENTENCES, padding=True, return_tensors="pt"))


CASES = [
    ("bert", "BertForSequenceClassification", {"method": "fpq", "quantize_attention": True}),
    ("bert", "BertModel", {"method": "nvfp4"}),
    ("roberta", "RobertaForMaskedLM", {"method": "minmax", "quantize_attention": True}),
    ("roberta", "RobertaForSequenceClassification", {"method": "nvfp4"}),
    ("xlm-roberta", "XLMRobertaModel", {"method": "minmax", "quantize_attention": True}),
    ("camembert", "CamembertForSequenceClassification", {"method": "minmax"}),
]


@pytest.mark.parametrize(
    ("model_type", "architecture", "settings"), CASES, ids=[f"{a}-{s['method']}" for _, a, s in CASES]
)
def test_encoder_exports_run_the_same_bits_on_torch_and_simulator(
    tmp_path: Path, model_type: str, architecture: str, settings: dict
) -> None:
    """Every nn.Linear (heads and pooler included) and nn.Embedding is quantized; the export loads as the class it came
    from (fp4sim.load_quantized too), and a padded batch gives the same bits on both backends in every layer."""
    checkpoint = save_encoder(tmp_path / "ckpt", model_type, architecture)
    out = quantize_checkpoint(checkpoint, CALIB_TEXT, QuantConfig(**settings, **FAST), tmp_path / "q", progress=False)
    original, tokenizer = load_pretrained(checkpoint)
    on_torch, _, metadata = load_export(out)
    on_simulator = fp4sim.load_quantized(out, backend="simulator")
    assert type(on_torch) is type(on_simulator) is type(original) and type(original).__name__ == architecture
    linears = {n for n, m in original.named_modules() if isinstance(m, nn.Linear)}
    embeddings = {n for n, m in original.named_modules() if isinstance(m, nn.Embedding)}
    attention = {n for n, m in original.named_modules() if n.endswith("attention.self")}
    expected = linears | embeddings | (attention if settings.get("quantize_attention") else set())
    assert set(metadata["modules"]) == expected
    monitor = AgreementMonitor().attach(on_simulator)  # each layer's torch path on the simulator's input
    inputs = padded(tokenizer)
    with torch.no_grad():
        ours, theirs = on_torch(**inputs), on_simulator(**inputs)
    field = "last_hidden_state" if architecture.endswith("Model") else "logits"
    assert np.array_equal(bits(ours[field]), bits(theirs[field]))
    matmuls = {f"{name}.{which}" for name in expected & attention for which in ("scores", "context")}
    assert set(monitor.layers) == linears | matmuls  # attention matmuls compared on their own operands too
    assert all(layer.outputs and layer.identical == layer.outputs for layer in monitor.layers.values())
    for name, parameter in original.named_parameters():  # LayerNorms stay as they were
        if "LayerNorm" in name or "layer_norm" in name:
            assert torch.equal(on_torch.get_parameter(name), parameter), name


def test_folded_inputs_are_the_unfolded_per_channel_ones(tmp_path: Path) -> None:
    """FPQ's per-channel activation bias, folded into shifts: every layer of a BERT export feeds its array the
    bits the unfolded per-channel quantizer gives, and some layers shift."""
    checkpoint = save_encoder(tmp_path / "ckpt", "bert", "BertForSequenceClassification")
    out = quantize_checkpoint(checkpoint, CALIB_TEXT, QuantConfig(method="fpq", **FAST), tmp_path / "q", progress=False)
    model, tokenizer, _ = load_export(out)
    assert shifted_layers_feed_unfolded_inputs(model, lambda: model(**padded(tokenizer))) > 0


@pytest.fixture(scope="module")
def bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_encoder(tmp_path_factory.mktemp("bert") / "ckpt", "bert", "BertModel")


def _sentence_batch(tokenizer) -> tuple[torch.Tensor, torch.Tensor]:
    batch = tokenizer(SENTENCES, padding=True, return_tensors="pt")
    return batch["input_ids"], batch["attention_mask"]


def test_padding_feeds_no_calibration_statistic(bert: Path) -> None:
    """MinMax activation scales are the maxima over each sentence run alone (no padding): padded positions, whose
    hidden states are real numbers too, count nowhere; counting them (no masks) moves some scale."""
    model, tokenizer = load_pretrained(bert)
    ids, masks = _sentence_batch(tokenizer)
    config = QuantConfig(method="minmax", calib_length=40)
    params = calibrate_model(model, ids, config, progress=False, masks=masks)
    peaks: dict[str, float] = {}
    hooks = [
        module.register_forward_pre_hook(
            lambda m, args, name=name: peaks.__setitem__(name, max(peaks.get(name, 0.0), float(args[0].abs().max())))
        )
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear)
    ]
    with torch.no_grad():
        for sentence in SENTENCES:
            model(**tokenizer([sentence], return_tensors="pt"))
    for hook in hooks:
        hook.remove()
    for name, peak in peaks.items():
        fmt = params[name].activation.fmt
        expected = max_to_scale(torch.tensor(peak), fmt)
        assert torch.allclose(params[name].activation.scale, expected, rtol=1e-5), name
    unmasked = calibrate_model(model, ids, config, progress=False)
    assert any(not torch.equal(unmasked[n].activation.scale, params[n].activation.scale) for n in peaks)


def test_calibration_sees_what_the_encoder_feeds_each_layer(bert: Path) -> None:
    """Chaining the layers on the collected inputs, with each padded window's own arguments (BERT passes its mask
    positionally), gives the model's hidden states for that window."""
    model, tokenizer = load_pretrained(bert)
    ids, masks = _sentence_batch(tokenizer)
    with torch.no_grad():
        hidden, calls = layer_inputs(model, ids, masks)
        for window in range(ids.shape[0]):
            expected = model(
                ids[window : window + 1], attention_mask=masks[window : window + 1], output_hidden_states=True
            )
            state = hidden[window : window + 1]
            for index, layer in enumerate(model.encoder.layer):
                assert np.array_equal(bits(state), bits(expected.hidden_states[index])), (window, index)
                args, kwargs = calls[index][window]
                state = layer(state, *args, **kwargs)


def test_fp4sim_attention_is_eager_attention_for_encoders(bert: Path) -> None:
    """With nothing quantized, fp4sim's attention function gives eager attention's outputs on a padded batch."""
    model, tokenizer = load_pretrained(bert)
    model.set_attn_implementation("eager")
    inputs = padded(tokenizer)
    with torch.no_grad():
        eager = model(**inputs).last_hidden_state
        use_fp4sim_attention(model)
        assert np.array_equal(bits(model(**inputs).last_hidden_state), bits(eager))


def _sentence_transformers_dir(path: Path, pooling: dict) -> Path:
    save_encoder(path, "bert", "BertModel")
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
    ]
    (path / "modules.json").write_text(json.dumps(modules))
    (path / "1_Pooling").mkdir()
    (path / "1_Pooling" / "config.json").write_text(json.dumps({"word_embedding_dimension": 32, **pooling}))
    return path


def test_sentence_transformers_directory_evaluates_its_pooled_embeddings(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """Its pooling (here [CLS]) goes into the export; eval's cosine to FP32 equals one counted text by text, on
    torch and on the simulator."""
    source = _sentence_transformers_dir(tmp_path / "st", {"pooling_mode_cls_token": True})
    out = quantize_checkpoint(source, CALIB_TEXT, QuantConfig(method="nvfp4"), tmp_path / "q", progress=False)
    assert json.loads((out / "fp4sim_quant.json").read_text())["pooling"] == ["cls_token"]
    text = tmp_path / "texts.txt"
    text.write_text("\n".join(SENTENCES) + "\n\n")
    assert main(["eval", "--quantized", str(out), "--text", str(text)]) == 0
    printed = capsys.readouterr().out
    quantized, fp32 = fp4sim.load_quantized(out), load_pretrained(source)[0]
    tokenizer = load_pretrained(source)[1]
    cosines = []
    with torch.no_grad():
        for sentence in SENTENCES:
            inputs = tokenizer([sentence], return_tensors="pt")
            a, b = quantized(**inputs).last_hidden_state[0, 0], fp32(**inputs).last_hidden_state[0, 0]
            cosines.append(float(a.double() @ b.double() / (a.double().norm() * b.double().norm())))
    assert f"mean {np.mean(cosines):.6f}, min {min(cosines):.6f}" in printed and "over 3 texts" in printed
    assert main(["eval", "--quantized", str(out), "--text", str(text), "--backend", "simulator"]) == 0
    assert f"mean {np.mean(cosines):.6f}, min {min(cosines):.6f}" in capsys.readouterr().out


def test_mean_pooling_counts_real_tokens_only(bert: Path) -> None:
    """A plain encoder's texts pool by the mean of their real tokens: padded in a batch as when run alone."""
    from fp4sim.models.encoder_eval import embeddings

    model, tokenizer = load_pretrained(bert)
    batched = embeddings(model, tokenizer, SENTENCES, ("mean_tokens",), batch_size=3)
    with torch.no_grad():
        alone = torch.stack(
            [model(**tokenizer([s], return_tensors="pt")).last_hidden_state[0].mean(0) for s in SENTENCES]
        )
    assert torch.allclose(batched, alone, atol=1e-6)


def test_classifier_accuracy_and_agreement(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """eval --data prints the accuracy and the agreement with FP32 that texts run one at a time give."""
    source = save_encoder(tmp_path / "ckpt", "bert", "BertForSequenceClassification")
    out = quantize_checkpoint(source, CALIB_TEXT, QuantConfig(method="minmax"), tmp_path / "q", progress=False)
    pairs = [(line, str(i % 3)) for i, line in enumerate(LINES[40:52])]
    data = tmp_path / "data.tsv"
    data.write_text("".join(f"{text}\t{label}\n" for text, label in pairs))
    assert main(["eval", "--quantized", str(out), "--data", str(data)]) == 0
    printed = capsys.readouterr().out
    quantized, fp32 = fp4sim.load_quantized(out), load_pretrained(source)[0]
    tokenizer = load_pretrained(source)[1]
    with torch.no_grad():
        ours = [int(quantized(**tokenizer([t], return_tensors="pt")).logits.argmax()) for t, _ in pairs]
        theirs = [int(fp32(**tokenizer([t], return_tensors="pt")).logits.argmax()) for t, _ in pairs]
    accuracy = np.mean([o == int(label) for o, (_, label) in zip(ours, pairs, strict=True)])
    agreement = np.mean([o == t for o, t in zip(ours, theirs, strict=True)])
    assert f"accuracy {accuracy:.4f} over 12 examples" in printed and f"agreement with FP32 {agreement:.4f}" in printed


def test_masked_lm_pseudo_perplexity(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """eval --text on a masked LM: each real token masked in turn, scored, exp of the mean NLL (counted here)."""
    source = save_encoder(tmp_path / "ckpt", "bert", "BertForMaskedLM")
    text = tmp_path / "texts.txt"
    text.write_text("\n".join(SENTENCES[::2]) + "\n")
    assert main(["eval", "--model", str(source), "--text", str(text)]) == 0
    printed = capsys.readouterr().out
    model, tokenizer = load_pretrained(source)
    nll = []
    with torch.no_grad():
        for sentence in SENTENCES[::2]:
            ids = tokenizer([sentence], return_tensors="pt")["input_ids"]
            for position in range(1, ids.shape[1] - 1):  # not [CLS], not [SEP]
                masked = ids.clone()
                masked[0, position] = tokenizer.mask_token_id
                nll.append(-float(torch.log_softmax(model(masked).logits[0, position], -1)[ids[0, position]]))
    assert f"pseudo-perplexity {math.exp(np.mean(nll)):.4f} over {len(nll)} masked tokens" in printed


def test_bad_encoder_input_fails_clearly_and_writes_nothing(
    tmp_path: Path, bert: Path, capsys: pytest.CaptureFixture
) -> None:
    """Empty calibration text, a TSV without labels, unreadable files, an unsupported head, a sentence-transformers
    directory with modules fp4sim does not run: an error that says so, and no export."""
    blank = tmp_path / "blank.txt"
    blank.write_text("\n  \n")
    assert main(["quantize", "--model", str(bert), "--calib", str(blank), "--out", str(tmp_path / "q")]) == 2
    assert "no non-empty line" in capsys.readouterr().err and not (tmp_path / "q").exists()
    classifier = save_encoder(tmp_path / "clf", "bert", "BertForSequenceClassification")
    unlabelled = tmp_path / "unlabelled.tsv"
    unlabelled.write_text("a text without a label\n")
    assert main(["eval", "--model", str(classifier), "--data", str(unlabelled)]) == 2
    assert "line 1: expected text<TAB>label" in capsys.readouterr().err
    (tmp_path / "binary.tsv").write_bytes(b"\xff\xfe\x00")
    assert main(["eval", "--model", str(classifier), "--data", str(tmp_path / "binary.tsv")]) == 2
    assert "not UTF-8" in capsys.readouterr().err
    save_encoder(tmp_path / "tok", "bert", "BertForTokenClassification")
    with pytest.raises(ValueError, match="BertForTokenClassification; fp4sim quantizes bert encoders as BertModel"):
        quantize_checkpoint(tmp_path / "tok", CALIB_TEXT, QuantConfig(method="nvfp4"), tmp_path / "q")
    st = _sentence_transformers_dir(tmp_path / "st", {"pooling_mode_mean_tokens": True})
    modules = json.loads((st / "modules.json").read_text())
    (st / "modules.json").write_text(
        json.dumps([*modules, {"path": "3_Dense", "type": "sentence_transformers.models.Dense"}])
    )
    with pytest.raises(ValueError, match="one Pooling and an optional Normalize"):
        quantize_checkpoint(st, CALIB_TEXT, QuantConfig(method="nvfp4"), tmp_path / "q")
    assert not (tmp_path / "q").exists()


def test_simulate_scores_an_encoder_and_compares_every_matmul(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """simulate --data on a classifier with quantized attention: accuracy and agreement of FP32, torch and each
    simulator run (exact equal to torch, and to a count made text by text), and every linear and attention matmul
    in the per-layer comparison, bit-identical in exact mode and not under a 2-bit aligned truncation."""
    source = save_encoder(tmp_path / "ckpt", "bert", "BertForSequenceClassification")
    config = QuantConfig(method="fpq", quantize_attention=True, **FAST)
    out = quantize_checkpoint(source, CALIB_TEXT, config, tmp_path / "q", progress=False)
    pairs = [(line, str(i % 3)) for i, line in enumerate(LINES[40:46])]
    data = tmp_path / "data.tsv"
    data.write_text("".join(f"{text}\t{label}\n" for text, label in pairs))
    argv = ["simulate", "--quantized", str(out), "--data", str(data), "--out", str(tmp_path / "r")]
    assert main([*argv, "--accum", "exact,aligned_truncate:2"]) == 0
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    quantized, tokenizer = fp4sim.load_quantized(out), load_pretrained(source)[1]
    with torch.no_grad():
        ours = [int(quantized(**tokenizer([t], return_tensors="pt")).logits.argmax()) for t, _ in pairs]
    assert report["accuracy"]["torch"] == np.mean([o == int(label) for o, (_, label) in zip(ours, pairs, strict=True)])
    assert report["agreement_with_fp32"]["fp32"] == 1.0 and report["scored"] == "6 examples"
    exact, coarse = report["simulator"]
    assert exact["accuracy"] == report["accuracy"]["torch"] and exact["all_layers_bit_identical"]
    attention = [n for n in json.loads((out / "fp4sim_quant.json").read_text())["modules"] if n.endswith(".self")]
    names = {layer["name"] for layer in exact["layers"]}
    assert {f"{n}.{which}" for n in attention for which in ("scores", "context")} <= names and len(attention) == 2
    assert not coarse["all_layers_bit_identical"]
    assert "| simulator | exact |" in capsys.readouterr().out


def test_simulate_takes_the_input_the_model_reads(tmp_path: Path, bert: Path, capsys: pytest.CaptureFixture) -> None:
    """An embedding model is scored on --text (its cosine to FP32, 1 for FP32 itself); --data is refused before
    any report is written."""
    out = quantize_checkpoint(bert, CALIB_TEXT, QuantConfig(method="nvfp4"), tmp_path / "q", progress=False)
    text = tmp_path / "t.txt"
    text.write_text("\n".join(SENTENCES) + "\n")
    tsv = tmp_path / "d.tsv"
    tsv.write_text("a text\t0\n")
    assert main(["simulate", "--quantized", str(out), "--data", str(tsv), "--out", str(tmp_path / "bad")]) == 2
    assert "evaluated with --text" in capsys.readouterr().err and not (tmp_path / "bad").exists()
    assert main(["simulate", "--quantized", str(out), "--text", str(text), "--out", str(tmp_path / "r")]) == 0
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert report["cosine_to_fp32_mean"]["fp32"] == 1.0 and report["scored"] == "3 texts"
    assert report["simulator"][0]["cosine_to_fp32_min"] == report["cosine_to_fp32_min"]["torch"] < 1.0
