"""Load local checkpoints, with errors that say what is wrong: LLaMA-shaped decoders (a directory or a GGUF file),
BERT-shaped text encoders (a directory, or a sentence-transformers directory) and vision transformers (ViT, DeiT)."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

from .sentence_transformers import read_sentence_transformer

DEFAULT_MODEL = Path(__file__).resolve().parents[2] / "models" / "tiny-llama-shakespeare"  # bundled, in the source tree
DEFAULT_CORPUS = DEFAULT_MODEL.parent / "shakespeare"  # its train.txt / valid.txt
# transformers model_type strings of decoder-only families with LLaMA's modules and names (model.embed_tokens,
# model.layers[i].self_attn.{q,k,v,o}_proj, mlp.{gate,up,down}_proj, model.norm, lm_head) and nothing the quantizer
# must know about: attention biases, q/k norms, post-norms, LayerNorms, sliding-window masks, layers without RoPE and
# scaling multipliers all live inside transformers' own modules. tests/test_families.py runs each through every path.
DECODER_MODEL_TYPES = (
    "llama",  # LLaMA 1/2/3, TinyLlama, SmolLM/SmolLM2, Vicuna...
    "mistral",
    "qwen2",
    "qwen3",
    "smollm3",
    "cohere",
    "ernie4_5",
    "exaone4",
    "granite",
    "helium",
    "hunyuan_v1_dense",
    "ministral",
    "olmo",
    "olmo2",
    "olmo3",
    "seed_oss",
    "stablelm",
)
# Encoders with BERT's modules (embeddings.{word,position,token_type}_embeddings, encoder.layer[i].attention.self.
# {query,key,value}, attention.output.dense, intermediate.dense, output.dense, LayerNorms) whose attention runs through
# transformers' attention interface; their heads are whatever linear layers follow the encoder.
TEXT_ENCODER_TYPES = ("bert", "roberta", "xlm-roberta", "camembert")
TEXT_HEADS = ("Model", "ForSequenceClassification", "ForMaskedLM")  # class name suffixes fp4sim loads
# Vision transformers: a patch-embedding convolution (quantized as the linear layer it is), then layers with the same
# linears (model.layers[i].attention.{query,key,value} ...), attention through transformers' attention interface.
VISION_ENCODER_TYPES = ("vit", "deit")
VISION_HEADS = ("Model", "ForImageClassification", "ForImageClassificationWithTeacher")
ENCODER_MODEL_TYPES = TEXT_ENCODER_TYPES + VISION_ENCODER_TYPES
SUPPORTED_MODEL_TYPES = DECODER_MODEL_TYPES + ENCODER_MODEL_TYPES
DTYPES = ("float32", "float16", "bfloat16")  # what a checkpoint loads as (--dtype)
GGUF_SUFFIX = ".gguf"


def check_checkpoint(path: str | Path, gguf_file: str | None = None) -> dict[str, Any]:
    """The checkpoint's configuration as a dict, after checking it is a supported local checkpoint.

    `path` is a Hugging Face checkpoint directory, a sentence-transformers
    directory (its transformer module is the checkpoint), a ``.gguf`` file, or
    (with `gguf_file`, a file name inside it) a directory holding a GGUF file.
    Raises FileNotFoundError for a missing directory, config.json or GGUF file,
    ValueError for an unreadable config or modules.json, a model_type not in
    SUPPORTED_MODEL_TYPES, an encoder class not ending in TEXT_HEADS or VISION_HEADS, or GGUF
    input without the gguf package.
    """
    gguf = gguf_location(path, gguf_file)
    if gguf is not None:
        return _gguf_config(*gguf)
    if not Path(path).is_dir():
        raise FileNotFoundError(
            f"model path {str(path)!r} is not a directory; pass a local Hugging Face checkpoint or a .gguf file"
        )
    root = transformer_directory(path)
    config_file = root / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"{root} has no config.json; it is not a Hugging Face checkpoint directory")
    try:
        config = json.loads(config_file.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        raise ValueError(f"{config_file} is not a readable JSON file: {err}") from None
    if not isinstance(config, dict):
        raise ValueError(f"{config_file} does not hold a JSON object")
    config = _supported(config, str(root))
    if is_encoder(config):
        encoder_class_name(config, str(root))
    return config


def transformer_directory(path: str | Path) -> Path:
    """The directory holding the transformer's config.json: `path`, or a sentence-transformers directory's
    transformer module. Raises what read_sentence_transformer raises."""
    layout = read_sentence_transformer(Path(path))
    return Path(path) if layout is None else layout.transformer


def is_encoder(config: dict[str, Any]) -> bool:
    """Whether a supported checkpoint's config (check_checkpoint) is an encoder rather than a causal decoder."""
    return config.get("model_type") in ENCODER_MODEL_TYPES


def is_vision(config: dict[str, Any]) -> bool:
    """Whether a supported checkpoint's config is a vision transformer (images in, an image processor)."""
    return config.get("model_type") in VISION_ENCODER_TYPES


def encoder_class_name(config: dict[str, Any], where: str = "the checkpoint") -> str:
    """The transformers class of an encoder checkpoint: its config's first architecture, ``<Family>Model`` when
    it names none. ValueError for a class that is not one of the family's TEXT_HEADS (VISION_HEADS)."""
    from transformers.models.auto.modeling_auto import MODEL_MAPPING_NAMES

    base = MODEL_MAPPING_NAMES[config["model_type"]]  # e.g. BertModel
    architectures = config.get("architectures")
    name = architectures[0] if isinstance(architectures, list) and architectures else base
    heads = VISION_HEADS if is_vision(config) else TEXT_HEADS
    allowed = [base.removesuffix("Model") + head for head in heads]
    if name not in allowed:
        model_type = config["model_type"]
        raise ValueError(f"{where} holds a {name}; fp4sim quantizes {model_type} encoders as {', '.join(allowed)}")
    return name


def gguf_location(path: str | Path, gguf_file: str | None = None) -> tuple[Path, str] | None:
    """(directory, file name) of the GGUF file `path` (and `gguf_file`) name; None for a checkpoint directory.

    Raises FileNotFoundError when the named GGUF file does not exist.
    """
    path = Path(path)
    if gguf_file is None and path.suffix != GGUF_SUFFIX:
        return None
    location = (path, gguf_file) if gguf_file is not None else (path.parent, path.name)
    if not (location[0] / location[1]).is_file():
        raise FileNotFoundError(f"GGUF file {str(location[0] / location[1])!r} does not exist")
    return location


def source_name(path: str | Path, gguf_file: str | None = None) -> str:
    """The checkpoint as an export's ``source_model`` records it: the directory, or the GGUF file's path."""
    gguf = gguf_location(path, gguf_file)
    return str(path) if gguf is None else str(gguf[0] / gguf[1])


def _gguf_config(directory: Path, name: str) -> dict[str, Any]:
    _require_gguf()
    stat = (directory / name).stat()
    config = _read_gguf_config(directory.resolve(), name, stat.st_mtime_ns, stat.st_size)
    return _supported(dict(config), str(directory / name))


@lru_cache(maxsize=8)
def _read_gguf_config(directory: Path, name: str, mtime_ns: int, size: int) -> dict[str, Any]:
    """transformers' config of a GGUF file (seconds of metadata parsing), kept per file version: read once per load."""
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(directory, gguf_file=name, local_files_only=True)
    except (ValueError, KeyError, OSError) as err:  # transformers: "GGUF model with architecture ... not supported"
        raise ValueError(f"{directory / name} cannot be read as a GGUF model: {err}") from None
    return config.to_dict()


def _require_gguf() -> None:
    try:
        import gguf  # noqa: F401  (transformers reads GGUF files with it)
    except ImportError:
        raise ValueError(
            "reading GGUF files needs the gguf package, which is not installed: pip install 'fp4sim[gguf]'"
        ) from None


def _supported(config: dict[str, Any], where: str) -> dict[str, Any]:
    model_type = config.get("model_type")
    if model_type not in SUPPORTED_MODEL_TYPES:
        architectures = config.get("architectures")
        names = ", ".join(map(str, architectures)) if isinstance(architectures, list) else ""
        raise ValueError(
            f"{where} holds a {model_type!r} model ({names}); fp4sim quantizes LLaMA-shaped decoders (model_type "
            f"{', '.join(DECODER_MODEL_TYPES)}) and BERT-shaped encoders ({', '.join(ENCODER_MODEL_TYPES)})"
        )
    return config


def load_pretrained(
    path: str | Path = DEFAULT_MODEL, *, gguf_file: str | None = None, **options: Any
) -> tuple[Any, Any]:
    """(model, preprocessor) from a supported local checkpoint: load_model(path, gguf_file=..., **options) (dtype,
    device, device_map, offload_folder) and load_preprocessor's tokenizer or image processor."""
    return load_model(path, gguf_file=gguf_file, **options), load_preprocessor(path, gguf_file)


def load_model(
    path: str | Path = DEFAULT_MODEL,
    *,
    gguf_file: str | None = None,
    dtype: str = "float32",
    device: str = "cpu",
    device_map: str | dict | None = None,
    offload_folder: str | Path | None = None,
) -> Any:
    """The model of a supported local checkpoint (see check_checkpoint), in eval mode, offline.

    A decoder loads as its causal LM (``LlamaForCausalLM``...), an encoder as the
    class its config names (encoder_class_name: ``BertModel``,
    ``BertForSequenceClassification``...). Weights load as `dtype`; a GGUF file's tensors are dequantized by
    transformers to it, and the model then carries no GGUF quantizer state
    (no ``hf_quantizer``, no ``config.quantization_config``). With `device_map`
    (e.g. "auto") accelerate places the layers across devices, CPU memory and
    `offload_folder` on disk, for models larger than one device; `device` is
    then ignored. Off the CPU, TF32 is turned off (use_full_float32): the FP32
    reference and calibration's statistics are full float32. Raises what
    check_checkpoint raises, and ValueError for a dtype not in DTYPES.
    """
    import torch

    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    config = check_checkpoint(path, gguf_file)
    source, gguf = _pretrained_arguments(path, gguf_file)
    placement = {} if device_map is None else {"device_map": device_map, "offload_folder": offload_folder}
    model = model_class(config).from_pretrained(
        source, local_files_only=True, dtype=getattr(torch, dtype), **gguf, **placement
    )
    if device_map is not None or torch.device(device).type != "cpu":
        use_full_float32()
    if gguf:  # the weights are plain dequantized tensors now: nothing is GGUF-quantized any more
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
    return (model if device_map is not None else model.to(device)).eval()


def model_class(config: dict[str, Any]) -> Any:
    """The transformers class a supported checkpoint's config (check_checkpoint) loads as (see load_model)."""
    import transformers
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    if is_encoder(config):
        return getattr(transformers, encoder_class_name(config))
    return getattr(transformers, MODEL_FOR_CAUSAL_LM_MAPPING_NAMES[config["model_type"]])


def _pretrained_arguments(path: str | Path, gguf_file: str | None) -> tuple[Path, dict[str, str]]:
    """What from_pretrained takes for this checkpoint: the transformer's directory, and gguf_file= for a GGUF file."""
    gguf = gguf_location(path, gguf_file)
    return (transformer_directory(path), {}) if gguf is None else (gguf[0], {"gguf_file": gguf[1]})


def use_full_float32() -> None:
    """Turn TF32 off for CUDA float32 matmuls: the torch paths' float32 sums are exact only at full precision,
    and an FP32 reference computed in TF32 is not FP32."""
    import torch

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")


@contextmanager
def onloaded(module: Any) -> Iterator[None]:
    """Inside, every parameter of `module` is a real tensor, also where accelerate offloaded it to CPU or disk."""
    from accelerate.utils import align_module_device, has_offloaded_params

    with ExitStack() as stack:
        for sub in module.modules():
            if has_offloaded_params(sub):
                stack.enter_context(align_module_device(sub))
        yield


def input_device(model: Any) -> Any:
    """Where to put input ids: the embedding's device, or the CPU when accelerate moves inputs itself."""
    import torch

    embeddings = model.get_input_embeddings()  # a table, or a vision model's patch projection (quantized: buffers)
    weight = next(itertools.chain(embeddings.parameters(), embeddings.buffers()))
    return torch.device("cpu") if weight.is_meta else weight.device


def load_preprocessor(path: str | Path = DEFAULT_MODEL, gguf_file: str | None = None) -> Any:
    """The tokenizer of a supported local checkpoint (see check_checkpoint), or a vision model's image processor,
    offline; raises what check_checkpoint raises."""
    from transformers import AutoImageProcessor, AutoTokenizer

    config = check_checkpoint(path, gguf_file)
    source, gguf = _pretrained_arguments(path, gguf_file)
    auto = AutoImageProcessor if is_vision(config) else AutoTokenizer
    return auto.from_pretrained(source, local_files_only=True, **gguf)
