"""The terminal chat: scripted through a pipe with the real model, interactive with a scripted one."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest

from bot.__main__ import main
from bot.config import Config
from bot.core.chat import ChatService
from bot.core.chat_prompts import ChatOptions
from bot.frontends.terminal import run_chat
from bot.store import Store
from tests.doubles import ScriptedBackend, scripted_engine

ROOT = Path(__file__).resolve().parents[2]


def test_piped_prompts_get_one_answer_each() -> None:
    """Each input line is one prompt; each answer is printed followed by a blank line."""
    result = subprocess.run(
        [sys.executable, "-m", "bot", "chat", "--no-history", "--temperature", "0", "--max-new-tokens", "12"],
        input="Tell me a joke about bananas.\nWhat has a neck but no head?\n",
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    answers = result.stdout.split("\n\n")
    assert answers[-1] == ""
    assert len(answers) == 3
    assert all(a.strip() for a in answers[:2])
    assert "USER:" not in result.stdout
    assert "Traceback" not in result.stderr


def test_missing_model_path_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A --model-path that does not exist ends with one line and no traceback (the command run in this process)."""
    monkeypatch.setattr(sys, "stdin", io.StringIO("hi\n"))
    assert main(["chat", "--model-path", str(tmp_path / "nope")]) == 1
    stderr = capsys.readouterr().err
    assert "does not exist" in stderr
    assert "Traceback" not in stderr


async def test_interactive_multi_line_reset_and_exit(embedded_tokenizer: tuple[object, int]) -> None:
    """A line ending in a backslash continues the message; !!reset forgets; !!exit quits."""
    config = Config()
    backend = ScriptedBackend(embedded_tokenizer[0], lambda prompt: "ok then")  # type: ignore[arg-type]
    async with await Store.open(":memory:") as store:
        chat = ChatService(store, scripted_engine(config, backend), config.generation)
        stdin = io.StringIO("first line\\\nsecond line\n!!reset\nagain\n!!exit\nnever read\n")
        stdout, stderr = io.StringIO(), io.StringIO()
        code = await run_chat(chat, ChatOptions(), stdin=stdin, stdout=stdout, stderr=stderr, interactive=True)
    assert code == 0
    assert "first line\nsecond line" in backend.prompts[0].text
    assert "first line" not in backend.prompts[1].text
    assert len(backend.prompts) == 2
    assert "ASSISTANT: ok then" in stdout.getvalue()
    assert "(conversation reset)" in stdout.getvalue()
