"""``python -m bot loadtest`` on a small load: the real bot, the fakes in their own process, checks that hold."""

from __future__ import annotations

import gc
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from discord.gateway import DiscordWebSocket
from discord.http import HTTPClient, Route

from bot.__main__ import main
from bot.errors import ConfigError
from bot.inference.tokenizer import HFTokenizer
from bot.loadtest import LoadOptions, checkout_root, run_loadtest

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def endpoints_restored(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The load test points discord.py at its fake Discord and freezes start-up's objects, as the bot does;
    put the endpoints back and the test process's objects back in the collector's reach afterwards."""
    monkeypatch.setattr(Route, "BASE", Route.BASE)
    monkeypatch.setattr(DiscordWebSocket, "DEFAULT_GATEWAY", DiscordWebSocket.DEFAULT_GATEWAY)
    monkeypatch.setattr(HTTPClient, "get_bot_gateway", HTTPClient.get_bot_gateway)
    yield
    gc.unfreeze()


async def test_five_conversations_are_each_answered_once_within_discords_limits(
    embedded_tokenizer: tuple[HFTokenizer, int], endpoints_restored: None
) -> None:
    """Five people write at once: all five replies stream together and end as one whole message each."""
    options = LoadOptions(conversations=5, reply_chars=300, reply_seconds=0.5, timeout=30, idle_seconds=0.2)
    report = await run_loadtest(options, tokenizer=embedded_tokenizer[0])
    assert report["checks"] == {
        "every_message_answered_once": True,
        "no_global_429": True,
        "requests_per_second_within_global_limit": True,
        "edits_within_channel_limit": True,
    }
    assert report["replies"]["answered_once"] == 5
    assert report["replies"]["messages_posted"] == 5
    assert report["model_server"] | {"active": 0} == {
        "requests": 5, "active": 0, "peak_active": 5, "completed": 5, "aborted": 0
    }  # fmt: skip
    assert report["bot"]["loop_lag_ms"]["samples"] > 0
    assert report["bot"]["rss_mb_peak"] >= report["bot"]["rss_mb_before"] > 0
    assert json.loads(json.dumps(report)) == report


def test_a_bot_without_its_tests_folder_cannot_run_it(tmp_path: Path) -> None:
    """Installed without tests/ (no fake Discord beside it), the load test says where it runs."""
    with pytest.raises(ConfigError, match="source checkout"):
        checkout_root(tmp_path)


def test_a_reply_longer_than_one_message_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    """--reply-chars past one Discord message is a usage error (exit 2), before anything starts."""
    assert main(["loadtest", "--reply-chars", "2500"]) == 2
    assert "--reply-chars must be between 1 and 1900" in capsys.readouterr().err
