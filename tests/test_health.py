"""``python -m bot healthcheck``: exit 0 only for a fresh heartbeat with the gateway connected and the worker alive."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from bot.__main__ import main
from bot.config import ModelConfig
from bot.health import Heartbeat, write_heartbeat
from bot.inference.remote import OpenAIBackend
from bot.inference.slots import SlotCache
from bot.inference.types import Prompt, SamplingParams
from bot.inference.worker import LocalBackend
from tests.test_doctor import free_port


def healthcheck(tmp_path: Path, capsys: pytest.CaptureFixture[str], beat: Heartbeat | None) -> tuple[int, str]:
    """Write ``beat`` (if any) where the config says, run the command; its code and its one line."""
    path = tmp_path / "beat.json"
    config = tmp_path / "config.toml"
    config.write_text(f'[health]\nfile = "{path}"\nmax_age_seconds = 60\n')
    if beat is not None:
        write_heartbeat(path, beat)
    code = main(["healthcheck", "--config", str(config)])
    captured = capsys.readouterr()
    return code, (captured.out + captured.err).strip()


def test_fresh_healthy_heartbeat_passes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A heartbeat 5 s old with both flags true: exit 0."""
    beat = Heartbeat(time.time() - 5, gateway_connected=True, worker_alive=True)
    assert healthcheck(tmp_path, capsys, beat) == (0, f"healthy ({tmp_path / 'beat.json'})")


def test_stale_heartbeat_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A heartbeat older than max_age_seconds means a hung or stopped bot: exit 1."""
    code, line = healthcheck(tmp_path, capsys, Heartbeat(time.time() - 90, gateway_connected=True, worker_alive=True))
    assert code == 1
    assert line.startswith("unhealthy: stale heartbeat: the last one is 90 s old (limit 60 s)")


def test_gateway_down_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A fresh heartbeat with the gateway disconnected: exit 1, saying so."""
    beat = Heartbeat(time.time(), gateway_connected=False, worker_alive=True)
    assert healthcheck(tmp_path, capsys, beat) == (1, "unhealthy: the gateway is not connected to Discord")


def test_dead_worker_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A fresh heartbeat with a variant that cannot serve: exit 1, naming it."""
    beat = Heartbeat(time.time(), gateway_connected=True, worker_alive=False, variants={"qlora": False, "full": True})
    assert healthcheck(tmp_path, capsys, beat) == (1, "unhealthy: the model worker cannot serve: qlora")


def test_no_heartbeat_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """No heartbeat file at all (not started, or still loading): exit 1."""
    code, line = healthcheck(tmp_path, capsys, None)
    assert code == 1
    assert line.startswith("unhealthy: no heartbeat at ")


async def test_local_worker_is_healthy_only_while_serving() -> None:
    """A local backend is unhealthy before loading, healthy with its worker thread running, unhealthy once closed."""
    assert not LocalBackend(ModelConfig(name="m")).healthy()
    backend = LocalBackend(ModelConfig(name="m"), loaded=object())  # type: ignore[arg-type]
    backend.kv = SlotCache(1, 1, limit=8)  # what start() makes from the model; the thread serves from it
    assert backend.healthy()
    await backend.close()
    assert not backend.healthy()


async def test_remote_backend_unhealthy_after_its_server_cannot_be_reached(embedded_tokenizer: tuple) -> None:  # type: ignore[type-arg]
    """A remote backend whose last request could not reach the server reports itself unhealthy."""
    tokenizer, _ = embedded_tokenizer
    url = f"http://127.0.0.1:{free_port()}/v1"
    variant = ModelConfig(name="r", backend="openai", base_url=url, model="m", tokenizer="/tmp", context_length=2048)
    backend = OpenAIBackend(variant, tokenizer=tokenizer)
    await backend.start()
    try:
        assert backend.healthy()
        with pytest.raises(Exception, match="cannot be reached"):
            async for _ in backend.generate(Prompt("hi", (1, 2), ()), SamplingParams(max_new_tokens=4)):
                pass
        assert not backend.healthy()
    finally:
        await backend.close()
