"""/compare's core: choosing variants, the shared seed, the shown order, the tally and win rates, the prompt."""

from __future__ import annotations

import random

import pytest

from bot.config import AIROBOROS_SYSTEM_PROMPT
from bot.core.compare import (
    MAX_VARIANTS,
    SEED_LIMIT,
    CompareError,
    PairTally,
    compare_messages,
    label,
    new_seed,
    pick_variants,
    shown_order,
    tally,
)
from bot.core.messages import Dialogue
from bot.core.prompts import AiroborosFormat, PromptBuilder
from bot.inference.tokenizer import HFTokenizer
from bot.store import VoteChoice, VoteCount

LOADED = ["qlora", "full", "smollm2"]


def test_no_variants_named_means_all_loaded() -> None:
    """Without ``variants`` every loaded variant runs, in the configured order."""
    assert pick_variants(None, LOADED) == LOADED
    assert pick_variants("  ", LOADED) == LOADED


def test_variants_are_a_comma_separated_subset() -> None:
    """Names are trimmed, kept in the order given, and repeats count once."""
    assert pick_variants(" full , qlora,full,", LOADED) == ["full", "qlora"]


def test_unknown_variant_names_the_loaded_ones() -> None:
    """A typo gets an error naming the unknown variant and listing the loaded ones."""
    with pytest.raises(CompareError) as caught:
        pick_variants("qlora,ful", LOADED)
    assert str(caught.value) == "No loaded model variant called `ful`. Loaded: `qlora`, `full`, `smollm2`."


def test_fewer_than_two_variants_are_refused() -> None:
    """One variant is no comparison; with one loaded, the error says so."""
    with pytest.raises(CompareError, match="at least two variants"):
        pick_variants("qlora", LOADED)
    with pytest.raises(CompareError, match="only `smollm2` is loaded"):
        pick_variants(None, ["smollm2"])


def test_too_many_variants_are_refused() -> None:
    """More variants than fit in one message are refused."""
    many = [f"v{i}" for i in range(MAX_VARIANTS + 1)]
    with pytest.raises(CompareError, match=f"At most {MAX_VARIANTS}"):
        pick_variants(None, many)


def test_blind_takes_exactly_two_variants() -> None:
    """Blind mode is for two variants (a vote reveals them)."""
    with pytest.raises(CompareError, match="exactly two"):
        pick_variants(None, LOADED, blind=True)
    assert pick_variants("qlora,full", LOADED, blind=True) == ["qlora", "full"]


def test_seeds_are_fresh_and_within_range() -> None:
    """Each comparison draws its own seed, within what every backend accepts."""
    seeds = {new_seed() for _ in range(20)}
    assert len(seeds) > 1
    assert all(0 <= seed < SEED_LIMIT for seed in seeds)
    assert new_seed(random.Random(3)) == new_seed(random.Random(3))


def test_blind_order_is_shuffled_and_plain_order_is_kept() -> None:
    """Blind comparisons show the variants in a random order; others as asked."""
    orders = {tuple(shown_order(["qlora", "full"], blind=True, rng=random.Random(seed))) for seed in range(20)}
    assert orders == {("qlora", "full"), ("full", "qlora")}
    assert shown_order(["qlora", "full"], blind=False, rng=random.Random(1)) == ["qlora", "full"]


def test_labels_are_letters() -> None:
    """Shown answers go by A, B, C."""
    assert [label(i) for i in range(3)] == ["A", "B", "C"]


def test_tally_adds_up_both_orders_of_a_pair() -> None:
    """A vote for A counts for whichever variant was shown first in that comparison."""
    counts = [
        VoteCount("qlora", "full", VoteChoice.A, 3),  # qlora wins 3
        VoteCount("full", "qlora", VoteChoice.A, 1),  # full wins 1
        VoteCount("full", "qlora", VoteChoice.B, 2),  # qlora wins 2
        VoteCount("qlora", "full", VoteChoice.TIE, 2),
    ]
    assert tally(counts) == [PairTally("full", "qlora", first_wins=1, second_wins=5, ties=2)]


def test_win_rate_counts_a_tie_as_half() -> None:
    """Win rates: wins plus half the ties over all votes; the pair's two rates add up to one."""
    pair = PairTally("full", "qlora", first_wins=1, second_wins=5, ties=2)
    assert pair.total == 8
    assert pair.win_rate("qlora") == pytest.approx(0.75)
    assert pair.win_rate("full") == pytest.approx(0.25)
    assert PairTally("a", "b").win_rate("a") == 0.0


def test_tally_orders_pairs_by_votes() -> None:
    """The most voted pair comes first; pairs are kept apart."""
    counts = [
        VoteCount("a", "b", VoteChoice.A, 1),
        VoteCount("c", "a", VoteChoice.TIE, 4),
    ]
    assert tally(counts) == [PairTally("a", "c", ties=4), PairTally("a", "b", first_wins=1)]


def test_compare_prompt_is_the_card_layout(llama_like_tokenizer: HFTokenizer) -> None:
    """Every variant gets the prompt as one plain user turn: the card's training prompt, byte for byte."""
    builder = PromptBuilder(AiroborosFormat(AIROBOROS_SYSTEM_PROMPT), llama_like_tokenizer, context_length=2048)
    dialogue = Dialogue(None, tuple(compare_messages("Tell me a joke about bananas.")))
    text = builder.build(dialogue, max_new_tokens=64).text
    assert text == f"{AIROBOROS_SYSTEM_PROMPT} USER: Tell me a joke about bananas. ASSISTANT:"
