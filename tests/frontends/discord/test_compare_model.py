"""/compare with the real embedded model: plain against nf4 + a LoRA adapter (the QLoRA layout), on CPU."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.config import Config, GenerationConfig, ModelConfig
from bot.core.engine import Engine
from bot.inference.loading import LoadedModel
from bot.inference.worker import LocalBackend
from tests.fakediscord import FakeDiscord
from tests.frontends.discord.conftest import run_bot
from tests.frontends.discord.test_compare import buttons, compare, descriptions, finished

pytestmark = pytest.mark.timeout(90)  # loading and quantizing the tiny model on a busy CPU; ~20 s when cached

TOKENS = 10


@pytest.fixture
async def engine(embedded: LoadedModel, nf4_lora: LoadedModel, lora_adapter: Path) -> AsyncIterator[Engine]:
    """Two variants of the embedded model: ``plain`` (float32) and ``qlora`` (nf4 + the adapter); greedy."""
    config = Config(
        models=[ModelConfig(name="plain"), ModelConfig(name="qlora", load_4bit=True, adapter=str(lora_adapter))],
        generation=GenerationConfig(temperature=0.0, max_new_tokens=TOKENS),
    )
    variants = {}
    for model, loaded in zip(config.models, (embedded, nf4_lora), strict=True):
        backend = LocalBackend(model, loaded=loaded)
        await backend.start()
        variants[model.name] = Engine._wrap(model, backend, config)
    engine = Engine(config, variants)
    yield engine
    await engine.close()


async def test_plain_and_qlora_variants_answer_side_by_side(fake: FakeDiscord, engine: Engine, tmp_path: Path) -> None:
    """Both real variants stream into one message and end with their own (different) greedy answers."""
    async with run_bot(fake, engine, tmp_path / "bot.sqlite3"):
        await compare(fake, "Tell me a story about a dragon.")
        message = await finished(fake)
    assert [e["title"] for e in message["embeds"]] == ["plain", "qlora"]
    plain, qlora = descriptions(message)
    assert plain.strip() and qlora.strip()
    assert plain != qlora  # the adapter on the nf4 base changes the greedy answer
    for embed in message["embeds"]:
        tokens = int(embed["footer"]["text"].split(" ")[0])
        assert 0 < tokens <= TOKENS
    assert [b["label"] for b in buttons(message)] == ["plain is better", "qlora is better", "Tie"]
