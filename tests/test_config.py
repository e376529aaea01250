"""Configuration: validation messages, defaults and the example file."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bot.config import EMBEDDED_MODEL, load_config
from bot.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_example_config_is_valid() -> None:
    """config.example.toml, which documents every key, loads as it is."""
    config = load_config(ROOT / "config.example.toml")
    assert [m.name for m in config.models] == ["qlora", "full"]
    assert config.default_model.adapter is not None


def test_no_models_means_the_embedded_model(tmp_path: Path) -> None:
    """A config without [[models]] serves the embedded model with its chat template."""
    config = load_config(write(tmp_path, "[generation]\ntemperature = 0.2\n"))
    assert config.default_model.path == EMBEDDED_MODEL
    assert config.default_model.resolved_prompt_format == "chat-template"


def test_card_defaults() -> None:
    """The defaults are the model card's: temperature 0.5, history on, airoboros for real models."""
    config = load_config(None)
    assert config.generation.temperature == 0.5
    assert config.generation.history is True


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[generation]\ntemperature = 3\n", "generation.temperature: Input should be less than or equal to 2"),
        ("[generation]\ntemprature = 0.3\n", "generation.temprature: unknown key"),
        ('[[models]]\nname = "a"\n[[models]]\nname = "a"\n', "repeated: a"),
        ('[inference]\ndefault_model = "nope"\n', "inference.default_model 'nope' is not one of the models"),
        ('[[models]]\nname = "r"\nbackend = "openai"\n', "needs both base_url and model"),
        ('[[models]]\nname = "r"\nbackend = "openai"\nbase_url = "http://x/v1"\nmodel = "m"\n', "needs tokenizer"),
        ("[storage\n", "not valid TOML"),
        ('token = "abc"\n', "token: unknown key"),
        ("[sources]\nmax_per_channel = 0\n", "sources.max_per_channel: Input should be greater than 0"),
        ("[sources]\nmax_bytes_per_channel = 1000\n", "sources.max_bytes_per_channel (1000) is below skills.source"),
    ],
)
def test_bad_config_names_file_key_and_problem(tmp_path: Path, text: str, expected: str) -> None:
    """Each kind of mistake gets a message with the file name and the key."""
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(path) in str(caught.value)
    assert expected in str(caught.value)


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    """A config path that does not exist says so."""
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "missing.toml")


def test_bad_config_exits_2_without_traceback(tmp_path: Path) -> None:
    """The command line prints one clear message and exits with code 2."""
    path = write(tmp_path, "[discord]\nguild_ids = ['x']\n")
    result = subprocess.run(
        [sys.executable, "-m", "bot", "check-config", "--config", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert f"{path}: invalid configuration" in result.stderr
    assert "discord.guild_ids.0" in result.stderr


@pytest.mark.parametrize(
    ("key", "url", "expected"),
    [
        ("api_base", "http://discord.example/api/v10", "must use https:// (the bot token is sent there)"),
        ("api_base", "http://127.0.0.1@evil.example/api", "must use https://"),
        ("api_base", "http://localhost.evil.example/api", "must use https://"),
        ("api_base", "http://evil.example\\@127.0.0.1/api", "backslash"),
        ("api_base", "ftp://discord.example/", "must use https:// (or http:// to this machine)"),
        ("api_base", "/api/v10", "must be an absolute https:// URL with a host"),
        ("api_base", "https://discord.com/api/v10\n", "without spaces or control characters"),
        ("gateway_url", "ws://gateway.example/", "must use wss:// (the bot token is sent there)"),
        ("gateway_url", "https://gateway.discord.gg/", "must use wss://"),
    ],
)
def test_discord_urls_must_be_encrypted_unless_loopback(tmp_path: Path, key: str, url: str, expected: str) -> None:
    """api_base and gateway_url carry the token: plain http/ws to another host is refused, naming the key."""
    path = write(tmp_path, f"[discord]\n{key} = {json.dumps(url)}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert f"discord.{key}: " in str(caught.value)
    assert expected in str(caught.value)


@pytest.mark.parametrize(
    ("api_base", "gateway_url"),
    [
        ("http://127.0.0.1:8080/api/v10", "ws://127.0.0.1:8080/gateway"),
        ("http://localhost:8080/api/v10", "ws://LOCALHOST:8080/"),
        ("http://[::1]:8080/api/v10", "ws://127.1.2.3/"),
        ("https://discord.example/api/v10", "wss://gateway.example/"),
    ],
)
def test_plain_discord_urls_to_this_machine_are_allowed(tmp_path: Path, api_base: str, gateway_url: str) -> None:
    """A Discord-compatible server on loopback (the fake Discord in tests) may use http/ws; any host may use TLS."""
    config = load_config(write(tmp_path, f'[discord]\napi_base = "{api_base}"\ngateway_url = "{gateway_url}"\n'))
    assert (config.discord.api_base, config.discord.gateway_url) == (api_base, gateway_url)
