"""Every loading path with the real embedded model, and clear errors for broken inputs."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import bitsandbytes as bnb
import pytest
import torch
from peft import PeftModel

from bot.config import ModelConfig
from bot.errors import ModelLoadError
from bot.inference.loading import LoadedModel, embedded_gguf, load_model
from bot.inference.types import FinishReason
from bot.inference.worker import LocalBackend
from tests.inference._streams import greedy_params, run

QUESTION = "What is the capital of France?"
PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


async def reply(loaded: LoadedModel, prompt_for: Callable[..., object], tokens: int = 12) -> str:
    """The greedy reply of ``loaded`` to the test question, through the worker."""
    worker = LocalBackend(ModelConfig(name=loaded.name), loaded=loaded)
    await worker.start()
    try:
        stream = await run(worker, prompt_for(QUESTION), greedy_params(tokens))
    finally:
        await worker.close()
    assert stream.finish in {FinishReason.STOP, FinishReason.LENGTH}
    return stream.text


async def test_plain_folder_loads(converted_folder, model_cache, prompt_for, greedy):
    """A transformers folder given as ``path`` loads and answers like the embedded model."""
    loaded = load_model(ModelConfig(name="folder", path=str(converted_folder)), device="cpu", cache_dir=model_cache)

    assert await reply(loaded, prompt_for) == greedy(prompt_for(QUESTION), 12).text


async def test_gguf_file_loads(model_cache, prompt_for, greedy):
    """A ``.gguf`` file given as ``path`` is converted (once, into the cache) and answers like the embedded model."""
    gguf = embedded_gguf()
    assert gguf.suffix == ".gguf"

    loaded = load_model(ModelConfig(name="gguf", path=str(gguf)), device="cpu", cache_dir=model_cache)

    assert await reply(loaded, prompt_for) == greedy(prompt_for(QUESTION), 12).text
    assert any(folder.name.startswith(gguf.stem) for folder in model_cache.iterdir())


async def test_nf4_quantizes_every_projection_and_generates(nf4, prompt_for):
    """With ``load_4bit`` every decoder projection is a bitsandbytes Linear4bit (nf4) and the model still talks."""
    linears = {name: module for name, module in nf4.model.named_modules() if name.endswith(PROJECTIONS)}

    assert len(linears) == nf4.model.config.num_hidden_layers * len(PROJECTIONS)
    assert all(isinstance(module, bnb.nn.Linear4bit) for module in linears.values())
    assert {module.weight.quant_type for module in linears.values()} == {"nf4"}
    assert (await reply(nf4, prompt_for)).strip()


async def test_nf4_with_lora_adapter_changes_the_output(nf4, nf4_lora, prompt_for):
    """An adapter on the nf4 base loads as a PeftModel over 4-bit layers and changes the greedy reply."""
    assert isinstance(nf4_lora.model, PeftModel)
    q_proj = nf4_lora.model.get_base_model().model.layers[0].self_attn.q_proj
    assert isinstance(q_proj.base_layer, bnb.nn.Linear4bit)
    assert "default" in q_proj.lora_A

    adapted = await reply(nf4_lora, prompt_for)

    assert adapted != await reply(nf4, prompt_for)


def _missing(tmp_path: Path, folder: Path) -> dict[str, str]:
    return {"path": str(tmp_path / "nowhere")}


def _folder_without_config(tmp_path: Path, folder: Path) -> dict[str, str]:
    (tmp_path / "model.safetensors").write_bytes(b"")
    return {"path": str(tmp_path)}


def _not_gguf(tmp_path: Path, folder: Path) -> dict[str, str]:
    (tmp_path / "weights.bin").write_bytes(b"\0" * 16)
    return {"path": str(tmp_path / "weights.bin")}


def _fake_gguf(tmp_path: Path, folder: Path) -> dict[str, str]:
    (tmp_path / "model.gguf").write_text("this is not a GGUF file")
    return {"path": str(tmp_path / "model.gguf")}


def _copy_of(folder: Path, tmp_path: Path, name: str, content: bytes) -> dict[str, str]:
    """``folder`` linked file by file into ``tmp_path``, except ``name``, written anew with ``content``."""
    for file in folder.iterdir():
        if file.name != name:
            (tmp_path / file.name).symlink_to(file)
    (tmp_path / name).write_bytes(content)
    return {"path": str(tmp_path)}


def _config_of(folder: Path, **changes: object) -> bytes:
    return json.dumps({**json.loads((folder / "config.json").read_text()), **changes}).encode()


def _broken_config(tmp_path: Path, folder: Path) -> dict[str, str]:
    return _copy_of(folder, tmp_path, "config.json", b'{"model_type": "llama", ')


def _unknown_architecture(tmp_path: Path, folder: Path) -> dict[str, str]:
    return _copy_of(folder, tmp_path, "config.json", _config_of(folder, model_type="no-such-architecture"))


def _impossible_config(tmp_path: Path, folder: Path) -> dict[str, str]:
    return _copy_of(folder, tmp_path, "config.json", _config_of(folder, hidden_size=64))


def _corrupt_weights(tmp_path: Path, folder: Path) -> dict[str, str]:
    return _copy_of(folder, tmp_path, "model.safetensors", (folder / "model.safetensors").read_bytes()[:4096])


def _adapter_without_config(tmp_path: Path, folder: Path) -> dict[str, str]:
    (tmp_path / "adapter_model.safetensors").write_bytes(b"")
    return {"path": str(folder), "adapter": str(tmp_path)}


def _broken_adapter_config(tmp_path: Path, folder: Path) -> dict[str, str]:
    (tmp_path / "adapter_config.json").write_text("{not json")
    return {"path": str(folder), "adapter": str(tmp_path)}


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (_missing, "does not exist"),
        (_folder_without_config, "has no config.json"),
        (_not_gguf, "is a file but not a .gguf file"),
        (_fake_gguf, "GGUF"),
        (_broken_config, "config.json"),
        (_unknown_architecture, "no-such-architecture"),
        (_impossible_config, "hidden size"),
        (_corrupt_weights, "deserializing"),
        (_adapter_without_config, "no adapter_config.json"),
        (_broken_adapter_config, "cannot load the adapter from"),
    ],
    ids=lambda value: value.__name__.strip("_") if callable(value) else None,
)
def test_broken_input_gives_a_clear_model_load_error(make, reason, tmp_path, converted_folder):
    """Each broken model or adapter is a ModelLoadError naming the variant and the reason, with no traceback text."""
    variant = ModelConfig(name="broken", **make(tmp_path, converted_folder))

    with pytest.raises(ModelLoadError) as failure:
        load_model(variant, device="cpu", cache_dir=tmp_path / "cache")

    message = str(failure.value)
    assert message.startswith("model 'broken': ")
    assert reason in message
    assert "Traceback" not in message
    cause = failure.value.__cause__
    assert cause is None or type(cause).__name__ not in message, message


def test_dtype_choice_follows_the_setting_and_the_hardware() -> None:
    """An explicit dtype is used as is; auto means bf16 on CUDA and on CPUs with native bf16."""
    from bot.inference.loading import cpu_has_fast_bf16, pick_dtype

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert pick_dtype("float32", cuda) is torch.float32
    assert pick_dtype("bfloat16", cpu) is torch.bfloat16
    assert pick_dtype("auto", cuda) is torch.bfloat16
    assert pick_dtype("auto", cpu) is (torch.bfloat16 if cpu_has_fast_bf16() else torch.float32)
