"""/compare against the fake Discord, with two scripted variants: streaming side by side, blind votes, results."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from bot.config import Config, ModelConfig
from bot.frontends.discord.features.compare.panel import (
    DESCRIPTION_LIMIT,
    EMBEDS_LIMIT,
    WRITING,
    cut,
    description_limit,
    footer_text,
)
from bot.frontends.discord.ui.rendering import RESTART_MARK
from bot.inference.tokenizer import HFTokenizer
from bot.store import VoteChoice, VoteCount
from tests.doubles import ScriptedBackend, scripted_variants
from tests.fakediscord import FakeDiscord
from tests.frontends.discord._helpers import bot_messages
from tests.frontends.discord.conftest import MESSAGE_WINDOW, PACE, Running, run_bot

pytestmark = pytest.mark.timeout(60)

QLORA_TEXT = "Bananas are berries, botanically speaking, and tasty ones too."
FULL_TEXT = "Why did the banana see a doctor? It was not peeling well."


@pytest.fixture
def qlora(embedded_tokenizer: tuple[HFTokenizer, int]) -> ScriptedBackend:
    return ScriptedBackend(embedded_tokenizer[0], lambda prompt: QLORA_TEXT, name="qlora", delay=0.05)


@pytest.fixture
def full(embedded_tokenizer: tuple[HFTokenizer, int]) -> ScriptedBackend:
    return ScriptedBackend(embedded_tokenizer[0], lambda prompt: FULL_TEXT, name="full", delay=0.05)


def two_variants() -> Config:
    return Config(models=[ModelConfig(name="qlora"), ModelConfig(name="full")])


@pytest.fixture
async def compared(
    fake: FakeDiscord, qlora: ScriptedBackend, full: ScriptedBackend, tmp_path: Path
) -> AsyncIterator[Running]:
    """The bot serving two scripted variants, ``qlora`` and ``full``."""
    engine = scripted_variants(two_variants(), {"qlora": qlora, "full": full})
    async with run_bot(fake, engine, tmp_path / "bot.sqlite3") as running:
        yield running


async def compare(fake: FakeDiscord, prompt: str = "Tell me a joke.", **options: Any) -> Any:
    user = options.pop("user", fake.alice)
    return await fake.invoke_slash("compare run", {"prompt": prompt, **options}, user=user)


def buttons(message: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for row in message.get("components", []) for c in row.get("components", [])]


async def shown(fake: FakeDiscord, done: Callable[[dict[str, Any]], bool], count: int = 1) -> dict[str, Any]:
    """The ``count``-th comparison message in the channel, once ``done(message)`` holds."""

    def ready() -> dict[str, Any] | None:
        messages = bot_messages(fake, fake.channel.id)
        return messages[count - 1] if len(messages) >= count and done(messages[count - 1]) else None

    return await fake.wait_for(ready, timeout=20)


async def finished(fake: FakeDiscord, count: int = 1) -> dict[str, Any]:
    """The ``count``-th comparison once it ended (its final edit landed)."""
    return await shown(fake, ended, count)


def ended(message: dict[str, Any]) -> bool:
    """Whether the final edit landed: no footer says an answer is still being written."""
    return all(not e["footer"]["text"].endswith(WRITING) for e in message["embeds"])


def descriptions(message: dict[str, Any]) -> list[str]:
    return [e.get("description", "") for e in message["embeds"]]


async def test_compare_commands_are_synced(fake: FakeDiscord, compared: Running) -> None:
    """/compare has run (prompt, variants, blind) and results."""
    (command,) = [c for c in fake.commands(fake.guild.id) if c["name"] == "compare"]
    subcommands = {s["name"]: s for s in command["options"]}
    assert set(subcommands) == {"run", "results"}
    options = {o["name"]: (o["type"], o.get("required", False)) for o in subcommands["run"]["options"]}
    assert options == {"prompt": (3, True), "variants": (3, False), "blind": (5, False)}


async def test_both_answers_stream_side_by_side_and_end_with_their_footers(
    fake: FakeDiscord, compared: Running, qlora: ScriptedBackend, full: ScriptedBackend
) -> None:
    """One message, one embed per variant, both streaming; the end shows each whole text and its footer."""
    qlora.delay = full.delay = PACE / 5  # words come faster than the message may be edited: the edits are paced
    handle = await compare(fake, "Tell me a joke.")
    callback = await handle.wait_callback()
    assert (callback["type"], callback["data"]["flags"] & 64) == (5, 64)  # acknowledged first, privately
    message = await finished(fake)
    assert message["content"].startswith(f"**{fake.alice.display_name}:** Tell me a joke.")
    assert [e["title"] for e in message["embeds"]] == ["qlora", "full"]
    assert [e["description"] for e in message["embeds"]] == [QLORA_TEXT, FULL_TEXT]
    for embed, words in zip(message["embeds"], (QLORA_TEXT, FULL_TEXT), strict=True):
        footer = embed["footer"]["text"]
        assert footer.startswith(f"{len(words.split())} tokens · ")
        assert "tokens/s" in footer and "first token" in footer
    streamed = [[e.get("description", "") for e in version["embeds"]] for version in message["edits"]]
    partial = [d for version in streamed for d in version if d and d not in (QLORA_TEXT, FULL_TEXT)]
    assert any(QLORA_TEXT.startswith(d) for d in partial)  # the answers streamed, not only their ends
    assert any(FULL_TEXT.startswith(d) for d in partial)
    assert fake.max_edits_within(MESSAGE_WINDOW, fake.channel.id, message["id"]) <= 1
    assert bot_messages(fake, fake.channel.id) == [message]  # the private "thinking…" answer is gone


async def test_every_variant_gets_the_same_prompt_seed_and_sampling(
    fake: FakeDiscord, compared: Running, qlora: ScriptedBackend, full: ScriptedBackend
) -> None:
    """Same prompt, same seed, same sampling for both variants; the seed is shown and a new one drawn per run."""
    await compare(fake, "Same for both?")
    message = await finished(fake)
    (a,), (b,) = qlora.params, full.params
    assert a == b
    assert a.seed is not None and f"seed {a.seed}" in message["content"]
    assert qlora.prompts[0].text == full.prompts[0].text
    assert "Same for both?" in qlora.prompts[0].text
    await compare(fake, "Again?")
    await finished(fake, count=2)
    assert qlora.params[1].seed == full.params[1].seed != a.seed


async def test_unknown_variant_is_refused_naming_the_loaded_ones(fake: FakeDiscord, compared: Running) -> None:
    """A typo in ``variants`` gets a private error listing the loaded variants, the prompt given back."""
    handle = await compare(fake, "Hello?", variants="qlora,fulll")
    original = await handle.wait_original(lambda m: "fulll" in m["content"])
    assert original["flags"] & 64
    assert "Loaded: `qlora`, `full`" in original["content"]
    (upload,) = fake.requests_to("PATCH", r"/webhooks/\d+/.+/messages/@original")[-1].files
    assert upload == "your-message.txt"
    assert bot_messages(fake, fake.channel.id) == []


async def test_one_variant_is_not_a_comparison(fake: FakeDiscord, compared: Running) -> None:
    """Naming a single variant is refused clearly."""
    handle = await compare(fake, "Hello?", variants="qlora")
    original = await handle.wait_original(lambda m: "at least two" in m["content"])
    assert original["flags"] & 64


async def test_a_subset_of_three_variants_runs_only_those(
    fake: FakeDiscord, embedded_tokenizer: tuple[HFTokenizer, int], tmp_path: Path
) -> None:
    """With three loaded, ``variants`` picks two in its order; all three run without it (and get no votes)."""
    tokenizer = embedded_tokenizer[0]
    backends = {name: ScriptedBackend(tokenizer, lambda p, n=name: f"{n} words", delay=0.0) for name in "xyz"}
    config = Config(models=[ModelConfig(name=name) for name in "xyz"])
    async with run_bot(fake, scripted_variants(config, backends), tmp_path / "bot.sqlite3"):
        await compare(fake, variants="z, x")
        first = await finished(fake)
        assert [e["title"] for e in first["embeds"]] == ["z", "x"]
        assert backends["y"].prompts == []
        await compare(fake)
        third = await shown(fake, ended, count=2)
        assert [e["title"] for e in third["embeds"]] == ["x", "y", "z"]
        assert descriptions(third) == ["x words", "y words", "z words"]
        assert buttons(third) == []


async def test_blind_comparison_hides_the_names_until_the_first_vote(
    fake: FakeDiscord, compared: Running, qlora: ScriptedBackend, full: ScriptedBackend
) -> None:
    """Blind: A and B in random order, no name anywhere; the first vote reveals both to everyone."""
    await compare(fake, "Which is better?", blind=True)
    message = await finished(fake)
    versions = message["edits"]
    assert all(e["title"] in ("A", "B") for version in versions for e in version["embeds"])
    assert "qlora" not in str(versions) and "full" not in str(versions)
    labels = [b["label"] for b in buttons(message)]
    assert labels == ["A is better", "B is better", "Tie"]
    order = ["qlora" if e["description"] == QLORA_TEXT else "full" for e in message["embeds"]]
    vote = await fake.click_button(message["id"], buttons(message)[0]["custom_id"], user=fake.bob)
    answer = await vote.wait_original(lambda m: "vote is in" in m["content"])
    assert answer["flags"] & 64
    assert f"A was `{order[0]}`, B was `{order[1]}`" in answer["content"]
    revealed = await fake.wait_for(lambda: (m := fake.message(message["id"]))["embeds"][0]["title"] != "A" and m)
    assert [e["title"] for e in revealed["embeds"]] == [f"A · {order[0]}", f"B · {order[1]}"]
    assert [e["description"] for e in revealed["embeds"]] == [e["description"] for e in message["embeds"]]
    assert buttons(revealed) == buttons(message)  # others can still vote
    assert await compared.store.votes.counts() == [VoteCount(order[0], order[1], VoteChoice.A, 1)]


async def test_a_second_vote_changes_nothing_and_says_so(fake: FakeDiscord, compared: Running) -> None:
    """One vote per person: a second press gets a private answer and the first vote stands."""
    await compare(fake, "Vote twice?")
    message = await finished(fake)
    custom_ids = [b["custom_id"] for b in buttons(message)]
    assert [b["label"] for b in buttons(message)] == ["qlora is better", "full is better", "Tie"]
    first = await fake.click_button(message["id"], custom_ids[1], user=fake.bob)
    await first.wait_original(lambda m: "vote is in: full is better" in m["content"])
    again = await fake.click_button(message["id"], custom_ids[0], user=fake.bob)
    answer = await again.wait_original(lambda m: "already voted" in m["content"])
    assert answer["flags"] & 64
    assert "full is better" in answer["content"]
    assert await compared.store.votes.counts() == [VoteCount("qlora", "full", VoteChoice.B, 1)]
    assert fake.message(message["id"])["embeds"] == message["embeds"]  # not blind: nothing to reveal


async def test_votes_survive_a_restart(
    fake: FakeDiscord, qlora: ScriptedBackend, full: ScriptedBackend, tmp_path: Path
) -> None:
    """The vote buttons are persistent: a press after a restart still counts."""
    engine = scripted_variants(two_variants(), {"qlora": qlora, "full": full})
    db = tmp_path / "bot.sqlite3"
    async with run_bot(fake, engine, db):
        await compare(fake, "Before the restart.")
        message = await finished(fake)
    async with run_bot(fake, engine, db) as running:
        vote = await fake.click_button(message["id"], buttons(message)[2]["custom_id"], user=fake.bob)
        await vote.wait_original(lambda m: "vote is in: Tie" in m["content"])
        assert await running.store.votes.counts() == [VoteCount("qlora", "full", VoteChoice.TIE, 1)]


async def test_results_show_the_tally_and_win_rates(fake: FakeDiscord, compared: Running) -> None:
    """/compare results: wins, ties and win rate for the pair, from everyone's votes."""
    await compare(fake, "Round one.")
    message = await finished(fake)
    qlora_better, _, tie = (b["custom_id"] for b in buttons(message))
    carol = fake.add_member(fake.guild, "carol")
    for user, custom_id in ((fake.alice, qlora_better), (fake.bob, qlora_better), (carol, tie)):
        vote = await fake.click_button(message["id"], custom_id, user=user)
        await vote.wait_original(lambda m: "vote is in" in m["content"])
    handle = await fake.invoke_slash("compare results", {})
    original = await handle.wait_original(lambda m: bool(m["embeds"]))
    (field,) = original["embeds"][0]["fields"]
    assert field["name"] == "full vs qlora"
    assert "**full** 0 · **qlora** 2 · ties 1 (3 votes)" in field["value"]
    assert "win rate: full 17% · qlora 83%" in field["value"]


async def test_results_without_votes_say_so(fake: FakeDiscord, compared: Running) -> None:
    """Before any vote, /compare results says how to get some."""
    handle = await fake.invoke_slash("compare results", {})
    original = await handle.wait_original(lambda m: bool(m["embeds"]))
    assert original["embeds"][0]["description"].startswith("No votes yet")


async def test_long_answers_are_cut_to_fit_the_message(
    fake: FakeDiscord, compared: Running, qlora: ScriptedBackend, full: ScriptedBackend
) -> None:
    """Answers longer than their share of the message are cut with "…"; together they fit Discord's limits."""
    for backend in (qlora, full):
        backend.script = lambda prompt: " ".join(["longword"] * 900)
        backend.delay = 0.0
    await compare(fake, "Talk a lot.")
    message = await finished(fake)
    for text in descriptions(message):
        assert text.startswith("longword longword") and text.endswith("…")
        assert len(text) == description_limit(2)
    total = sum(len(e["title"]) + len(e["description"]) + len(e["footer"]["text"]) for e in message["embeds"])
    assert total <= EMBEDS_LIMIT


async def test_a_shutdown_stops_the_answers_and_shows_them_marked(
    fake: FakeDiscord, qlora: ScriptedBackend, full: ScriptedBackend, tmp_path: Path
) -> None:
    """Closing the bot mid-comparison stops both answers; the text so far stays, marked, with no vote buttons."""
    for backend in (qlora, full):
        backend.script = lambda prompt: " ".join(f"w{i}" for i in range(300))
        backend.delay = 0.05
    engine = scripted_variants(two_variants(), {"qlora": qlora, "full": full})
    async with run_bot(fake, engine, tmp_path / "bot.sqlite3"):
        await compare(fake, "Talk until I stop you.")
        await shown(fake, lambda m: all(d.startswith("w0 w1") for d in descriptions(m)))
    message = bot_messages(fake, fake.channel.id)[-1]
    for text in descriptions(message):
        assert text.startswith("w0 w1") and text.endswith(RESTART_MARK)
    assert ended(message) and buttons(message) == []


async def test_a_failed_answer_is_shown_and_gets_no_votes(
    fake: FakeDiscord, compared: Running, full: ScriptedBackend
) -> None:
    """A variant that fails shows why in its embed; the other answer still ends; no vote buttons."""
    full.script = lambda prompt: "FAIL now"
    await compare(fake, "Break one.")
    message = await shown(fake, ended)
    assert descriptions(message) == [QLORA_TEXT, "⚠️ The model failed while answering; please try again."]
    assert buttons(message) == []


async def test_missing_embed_links_is_named(fake: FakeDiscord, compared: Running) -> None:
    """Without Embed Links in the channel, the person is told which permission is missing."""
    await fake.set_bot_permissions(fake.channel.id, deny=1 << 14)
    handle = await compare(fake, "Anyone?")
    original = await handle.wait_original(lambda m: "Embed Links" in m["content"])
    assert original["flags"] & 64
    assert bot_messages(fake, fake.channel.id) == []


async def test_a_full_queue_refuses_the_whole_comparison(
    fake: FakeDiscord, compared: Running, qlora: ScriptedBackend, full: ScriptedBackend
) -> None:
    """If one variant is busy, neither runs; the person gets the prompt back."""
    compared.chat.engine.variant("full").scheduler.max_per_user = 0
    handle = await compare(fake, "Busy?")
    original = await handle.wait_original(lambda m: "⚠️" in m["content"])
    assert original["flags"] & 64
    assert qlora.prompts == [] and full.prompts == []
    assert bot_messages(fake, fake.channel.id) == []
    assert await compared.store.votes.counts() == []


def test_cut_keeps_short_text_and_marks_a_cut() -> None:
    """Text within the limit is kept; longer text ends with "…" at exactly the limit."""
    assert cut("short", 10) == "short"
    assert cut("x" * 10, 10) == "x" * 10
    assert cut("x" * 11, 10) == "x" * 9 + "…"
    assert len(cut("y" * 5000)) == DESCRIPTION_LIMIT


def test_description_limits_share_the_message() -> None:
    """Each description gets at most 4096 characters and all of them, with titles and footers, fit 6000."""
    assert description_limit(1) == DESCRIPTION_LIMIT
    for count in (2, 3, 4):
        assert count * (description_limit(count) + 200) <= EMBEDS_LIMIT


def test_footer_says_tokens_speed_and_first_token() -> None:
    """The footer: tokens, tokens per second, time to first token."""
    assert footer_text(42, 2.0, 0.25) == "42 tokens · 21.0 tokens/s · first token 0.25 s"
    assert footer_text(0, 0.0, None) == "0 tokens · first token …"
