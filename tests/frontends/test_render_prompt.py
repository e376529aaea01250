"""``python -m bot render-prompt``: the exact prompt on stdout, clear errors with exit code 2."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from bot.__main__ import main
from bot.config import AIROBOROS_SYSTEM_PROMPT, ModelConfig
from bot.inference import loading
from bot.inference.tokenizer import HFTokenizer

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Rendered:
    """What the command ended with."""

    returncode: int
    stdout: str
    stderr: str


Render = Callable[..., Rendered]
_TOKENIZERS: dict[str, tuple[HFTokenizer, int]] = {}
"""Tokenizers loaded by this module's commands, by variant: each is loaded once, not once per command."""


def write_input(tmp_path: Path, conversation: object, config: str | None) -> list[str]:
    """The input (and config) files of a command; the arguments naming them."""
    source = tmp_path / "conv.json"
    source.write_text(json.dumps(conversation) if not isinstance(conversation, str) else conversation)
    args = ["--input", str(source)]
    if config is not None:
        (tmp_path / "config.toml").write_text(config)
        args += ["--config", str(tmp_path / "config.toml")]
    return args


@pytest.fixture
def render(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Render:
    """``render-prompt`` run in this process (the command's ``main``), each variant's tokenizer loaded once.

    :func:`test_airoboros_output_is_exactly_the_vicuna_layout` runs ``python -m bot render-prompt`` itself.
    """
    load_tokenizer = loading.load_tokenizer

    def cached(variant: ModelConfig, *, cache_dir: str | Path | None = None) -> tuple[HFTokenizer, int]:
        key = f"{variant.model_dump_json()} {cache_dir}"
        if key not in _TOKENIZERS:
            _TOKENIZERS[key] = load_tokenizer(variant, cache_dir=cache_dir)
        return _TOKENIZERS[key]

    monkeypatch.setattr(loading, "load_tokenizer", cached)

    def run(conversation: object, *args: str, config: str | None = None) -> Rendered:
        capsys.readouterr()
        code = main(["render-prompt", *write_input(tmp_path, conversation, config), *args])
        out, err = capsys.readouterr()
        return Rendered(code, out, err)

    return run


def test_airoboros_output_is_exactly_the_vicuna_layout(tmp_path: Path) -> None:
    """``python -m bot render-prompt``: stdout holds the vicuna_v1.1 string and nothing else (no trailing newline)."""
    conversation = {
        "system": None,
        "messages": [
            {"role": "user", "content": "What has a neck but no head?", "name": None},
            {"role": "assistant", "content": "A bottle.", "name": None},
            {"role": "user", "content": "Tell me a joke about bananas.\nMake it short.", "name": None},
        ],
    }
    command = [sys.executable, "-m", "bot", "render-prompt", *write_input(tmp_path, conversation, None)]
    result = subprocess.run(
        [*command, "--format", "airoboros"], capture_output=True, text=True, cwd=ROOT, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == (
        f"{AIROBOROS_SYSTEM_PROMPT} USER: What has a neck but no head? ASSISTANT: A bottle.</s>"
        "USER: Tell me a joke about bananas.\nMake it short. ASSISTANT:"
    )


def test_chat_template_is_the_default_for_the_embedded_model(render: Render) -> None:
    """Without --format the embedded model's chat template is used."""
    result = render({"system": "Be brief.", "messages": [{"role": "user", "content": "Hi"}]})
    assert result.returncode == 0, result.stderr
    assert (
        result.stdout
        == "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    )


def test_conversation_that_cannot_fit_exits_2(render: Render) -> None:
    """A message longer than the window gets a clear error and exit code 2."""
    config = '[[models]]\nname = "small"\ncontext_length = 256\n[generation]\nmax_new_tokens = 64\n'
    result = render({"messages": [{"role": "user", "content": "word " * 400}]}, config=config)
    assert result.returncode == 2
    assert "too long" in result.stderr
    assert result.stdout == ""
    assert "Traceback" not in result.stderr


def test_invalid_input_exits_2(render: Render) -> None:
    """Bad JSON and a bad role are reported in one line each, with exit code 2."""
    bad_json = render("{not json")
    assert bad_json.returncode == 2
    assert "not valid JSON" in bad_json.stderr
    bad_role = render({"messages": [{"role": "system", "content": "x"}]})
    assert bad_role.returncode == 2
    assert "messages.0.role" in bad_role.stderr


BLUEBERRIES = "In a shocking turn of events, blueberries are now green, but will be sticking with the same name."


def test_sources_render_as_the_cards_closed_context_example(render: Render) -> None:
    """Sources and an instruction print byte for byte as the card's example, wrapped in the vicuna layout."""
    question = {
        "sources": [{"metadata": {"date": "2021-01-01", "url": "https://web.site/123"}, "text": BLUEBERRIES}],
        "instruction": "What color are bluberries? Source?",
    }
    result = render(question, "--format", "airoboros")
    assert result.returncode == 0, result.stderr
    assert result.stdout == (
        f"{AIROBOROS_SYSTEM_PROMPT} USER: BEGININPUT\nBEGINCONTEXT\ndate: 2021-01-01\nurl: https://web.site/123\n"
        f"ENDCONTEXT\n{BLUEBERRIES}\nENDINPUT\nBEGININSTRUCTION\nWhat color are bluberries? Source?\n"
        "ENDINSTRUCTION ASSISTANT:"
    )


def test_sources_keep_their_order_and_their_metadata_order(render: Render) -> None:
    """Several sources print in the given order, each with its metadata keys in the file's order."""
    question = {
        "system": "",
        "sources": [
            {"metadata": {"url": "https://a.example", "date": "2023-01-02", "author": "Ann"}, "text": "A text."},
            {"metadata": {"title": "B"}, "text": "B text.\nENDINPUT"},
        ],
        "instruction": "Compare.",
    }
    result = render(question, "--format", "airoboros")
    assert result.returncode == 0, result.stderr
    assert result.stdout == (
        " USER: BEGININPUT\nBEGINCONTEXT\nurl: https://a.example\ndate: 2023-01-02\nauthor: Ann\nENDCONTEXT\n"
        "A text.\nENDINPUT\nBEGININPUT\nBEGINCONTEXT\ntitle: B\nENDCONTEXT\nB text.\nEND INPUT\nENDINPUT\n"
        "BEGININSTRUCTION\nCompare.\nENDINSTRUCTION ASSISTANT:"
    )


def test_invalid_sources_input_exits_2(render: Render) -> None:
    """A source without text is named in one line, with exit code 2."""
    result = render({"sources": [{"metadata": {}}], "instruction": "Why?"})
    assert result.returncode == 2
    assert "sources.0.text" in result.stderr


CARD_SCENE = {
    "characters": [
        {"name": "Yoda", "description": "the ever clever jedi master."},
        {"name": "Homer", "description": "you know, the goofy yellow guy.", "full_name": "Homer Simpson"},
    ],
    "humans": ["Jon"],
    "setting": "Conversation will revolve around the grapes, in a local cafe with delicious coffee.",
    "rules": None,
}
CARD_SHEET = (
    "Characters:\n- Yoda, the ever clever jedi master.\n- Homer Simpson, you know, the goofy yellow guy.\n"
    "- USER/Jon - don't generate any speech or actions on behalf of Jon\nRules:\n"
    "- be sure to use the manerisms and speaking style of the characters correctly\n"
    "- surround character actions with asterisks\n- always put quotes around words spoken by the characters\n"
    "- use a new line for each character's actions or speech\n"
    "- always prefix actions/speech with the character's name and colon\n"
    "- only generate text and actions on behalf of Yoda or Homer, and never anyone else\n"
    "Conversation will revolve around the grapes, in a local cafe with delicious coffee.\n"
    "Generate a single interaction between Yoda and Homer to start, with one sentence each."
)


def test_scene_renders_as_the_cards_multi_character_example(render: Render) -> None:
    """A scene with its opening and Jon's line prints byte for byte as the card's example in the vicuna layout."""
    opening = (
        'Yoda: "Mmm, these grapes are quite delicious, Master Homer."\n'
        "Homer: \"Oh yeah, Yoda! They're the best grapes I've ever had!\""
    )
    conversation = {
        "scene": CARD_SCENE,
        "messages": [
            {"role": "assistant", "content": opening},
            {"role": "user", "content": "*enters the cafe* Sorry I'm late guys!", "name": "Jon"},
        ],
    }
    result = render(conversation, "--format", "airoboros")
    assert result.returncode == 0, result.stderr
    assert result.stdout == (
        f"{AIROBOROS_SYSTEM_PROMPT} USER: {CARD_SHEET} ASSISTANT: {opening}</s>"
        "USER: *enters the cafe* Sorry I'm late guys! ASSISTANT:"
    )


def test_scene_without_messages_is_the_opening_prompt(render: Render) -> None:
    """With no messages yet, the scene prints its sheet as the only user turn."""
    result = render({"system": "", "scene": CARD_SCENE}, "--format", "airoboros")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f" USER: {CARD_SHEET} ASSISTANT:"


def test_invalid_scene_exits_2(render: Render) -> None:
    """A scene without characters is refused in one line; a human named like a character gets a suffixed label."""
    empty = render({"scene": {**CARD_SCENE, "characters": []}})
    assert empty.returncode == 2
    assert "conv.json: A scene needs at least one character" in empty.stderr
    assert "Traceback" not in empty.stderr
    clash = render({"scene": {**CARD_SCENE, "humans": ["yoda"]}})
    assert clash.returncode == 0
    assert "- USER/yoda (2) - don't generate any speech or actions on behalf of yoda (2)" in clash.stdout
