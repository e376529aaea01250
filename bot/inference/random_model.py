"""LLaMA-shaped models with random weights, to measure throughput without downloading real ones.

The model is written once to the cache folder with the embedded model's tokenizer (its
ids fit a 32000-token vocabulary only as far as the prompts go: benchmark prompts use ids
below the vocabulary size) and then loaded through the normal loading path, so nf4
quantization and everything after it are the same code as for the real QLoRA model.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

from bot.config import EMBEDDED_MODEL, ModelConfig
from bot.inference.loading import resolve_model_path

_log = logging.getLogger(__name__)

SHAPES: dict[str, dict[str, Any]] = {
    # LLaMA-1 7B: the shape of airoboros-7b-gpt4-1.4.1.
    "llama-7b": {
        "hidden_size": 4096,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "intermediate_size": 11008,
        "vocab_size": 32000,
        "max_position_embeddings": 2048,
    },
    # A small LLaMA for trying the flag on a CPU.
    "tiny": {
        "hidden_size": 256,
        "num_hidden_layers": 4,
        "num_attention_heads": 4,
        "intermediate_size": 768,
        "vocab_size": 32000,
        "max_position_embeddings": 2048,
    },
}


def random_weights_model(
    shape: str,
    cache_dir: Path,
    *,
    load_4bit: bool = False,
    tokenizer: Path | None = None,
    vocab_size: int | None = None,
    seed: int = 0,
) -> ModelConfig:
    """A variant whose ``path`` holds a random-weight LLaMA of ``shape``, built once in ``cache_dir``.

    ``tokenizer`` is a tokenizer folder to pair it with (default: the embedded model's);
    ``vocab_size`` replaces the shape's, so that every id the model can pick is one the
    tokenizer knows (a small test tokenizer), and names its own folder.
    """
    if shape not in SHAPES:
        raise ValueError(f"unknown shape {shape!r}; choose from {', '.join(SHAPES)}")
    name = f"random-{shape}" if vocab_size is None else f"random-{shape}-vocab{vocab_size}"
    target = cache_dir / name
    if not (target / "config.json").is_file():
        _log.info("Building a random-weight %s model in %s (once)", shape, target)
        dimensions = SHAPES[shape] if vocab_size is None else {**SHAPES[shape], "vocab_size": vocab_size}
        config = LlamaConfig(**dimensions, rms_norm_eps=1e-6, bos_token_id=1, eos_token_id=2, pad_token_id=0)
        device = "cuda" if torch.cuda.is_available() else "cpu"
        torch.manual_seed(seed)
        with torch.device(device):
            model = LlamaForCausalLM(config).to(torch.bfloat16)  # type: ignore[arg-type]
        target.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(target)
        source = tokenizer or resolve_model_path(ModelConfig(name="t", path=EMBEDDED_MODEL), cache_dir)
        AutoTokenizer.from_pretrained(str(source)).save_pretrained(target)
        del model
    return ModelConfig(name=name, path=str(target), load_4bit=load_4bit, prompt_format="airoboros", context_length=2048)
