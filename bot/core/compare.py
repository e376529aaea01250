"""/compare: which variants run, the seed they share, the order they are shown in, and the tally of votes.

The same prompt runs through several model variants with the same seed and sampling, so
the answers differ only by the model (the reason the QLoRA model was published: to compare
it with the full fine-tune). With exactly two variants people vote, as in FastChat's
Chatbot Arena; :func:`tally` turns the stored votes into wins, ties and win rates per pair.
"""

from __future__ import annotations

import random
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from bot.core.messages import ChatMessage
from bot.errors import BotError
from bot.store import VoteChoice, VoteCount

MAX_VARIANTS = 4
"""Variants one comparison may show: their answers share one Discord message (6000 characters of embeds)."""
SEED_LIMIT = 2**31
"""Seeds are drawn below this, so every backend (torch, vLLM, llama.cpp) takes them as they are."""


class CompareError(BotError):
    """A comparison that cannot run as asked (unknown variants, too few, blind with more than two)."""


def pick_variants(
    requested: str | None, loaded: Sequence[str], *, blind: bool = False, at_once: int | None = None
) -> list[str]:
    """The variants ``requested`` names (comma-separated), default all ``loaded``; refuses what cannot be compared.

    ``at_once`` is how many requests one person may have waiting or running (``max_queued_per_user``, one cap across
    variants): a comparison asks all its variants at once, so it may not name more.
    """
    available = ", ".join(f"`{name}`" for name in loaded)
    if requested is None or not requested.strip():
        chosen = list(loaded)
    else:
        chosen = []
        for part in requested.split(","):
            name = part.strip()
            if name and name not in chosen:
                chosen.append(name)
        unknown = [name for name in chosen if name not in loaded]
        if unknown:
            names = ", ".join(f"`{name}`" for name in unknown)
            raise CompareError(f"No loaded model variant called {names}. Loaded: {available}.")
    if len(chosen) < 2:
        if len(loaded) < 2:
            raise CompareError(f"Comparing needs at least two model variants, and only {available} is loaded.")
        raise CompareError(f"Name at least two variants to compare (comma-separated). Loaded: {available}.")
    if len(chosen) > MAX_VARIANTS:
        raise CompareError(f"At most {MAX_VARIANTS} variants fit side by side; pick some with `variants`.")
    if at_once is not None and len(chosen) > at_once:
        raise CompareError(
            f"A comparison asks all its variants at once, and one person may have {at_once} requests waiting or "
            f"running here; name at most {at_once} with `variants`."
        )
    if blind and len(chosen) != 2:
        raise CompareError("A blind comparison takes exactly two variants (the first vote reveals them).")
    return chosen


def new_seed(rng: random.Random | None = None) -> int:
    """A fresh sampling seed for one comparison; every variant gets the same one."""
    return rng.randrange(SEED_LIMIT) if rng is not None else secrets.randbelow(SEED_LIMIT)


def shown_order(variants: Sequence[str], *, blind: bool, rng: random.Random | None = None) -> list[str]:
    """The order the answers are shown in: as asked, or shuffled when blind so A is no hint."""
    order = list(variants)
    if blind:
        (rng or random.SystemRandom()).shuffle(order)
    return order


def label(position: int) -> str:
    """The letter a shown answer goes by: A, B, C, ..."""
    return chr(ord("A") + position)


def compare_messages(prompt: str) -> list[ChatMessage]:
    """The conversation every variant answers: the prompt alone, as one user turn (no name, no history)."""
    return [ChatMessage("user", prompt)]


@dataclass(frozen=True, slots=True)
class PairTally:
    """The votes on comparisons of two variants, whichever was shown first."""

    first: str
    second: str
    first_wins: int = 0
    second_wins: int = 0
    ties: int = 0

    @property
    def total(self) -> int:
        return self.first_wins + self.second_wins + self.ties

    def wins(self, variant: str) -> int:
        """The votes that said ``variant`` was better."""
        return self.first_wins if variant == self.first else self.second_wins

    def win_rate(self, variant: str) -> float:
        """``variant``'s share of the votes, a tie counting half (the two rates add up to 1); 0 without votes."""
        if self.total == 0:
            return 0.0
        return (self.wins(variant) + self.ties / 2) / self.total


def tally(counts: Iterable[VoteCount]) -> list[PairTally]:
    """Votes per pair of variants (names in alphabetical order), the most voted pair first.

    A vote for A counts for whichever variant was shown as A in that comparison, so pairs
    shown in either order add up.
    """
    pairs: dict[tuple[str, str], list[int]] = {}
    for count in counts:
        first, second = sorted((count.first, count.second))
        wins = pairs.setdefault((first, second), [0, 0, 0])
        if count.choice == VoteChoice.TIE:
            wins[2] += count.count
        else:
            winner = count.first if count.choice == VoteChoice.A else count.second
            wins[0 if winner == first else 1] += count.count
    tallies = [PairTally(a, b, *wins) for (a, b), wins in pairs.items()]
    return sorted(tallies, key=lambda t: (-t.total, t.first, t.second))
