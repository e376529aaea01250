"""Lorebooks: which entries trigger (keys, case, constant, secondary keys) and which fit the budget, in what order."""

from __future__ import annotations

from typing import Any

from bot.core.lorebook import Lorebook, lore_for_turn, read_lorebook


def book(*entries: dict[str, Any], **fields: Any) -> Lorebook:
    read = read_lorebook({"entries": list(entries), "extensions": {}, **fields})
    assert read is not None
    return read


def entry(keys: list[str], content: str, **fields: Any) -> dict[str, Any]:
    return {"keys": keys, "content": content, "enabled": True, "insertion_order": 0, "extensions": {}, **fields}


def words(text: str) -> int:
    return len(text.split())


def lore(*books: Lorebook, recent: list[str], budget: int = 100, depth: int = 4) -> tuple[str, ...]:
    fills = [(b, lambda text: text.replace("{{char}}", "Mira")) for b in books]
    return lore_for_turn(fills, recent, scan_depth=depth, budget=budget, count_tokens=words)


def test_keys_match_case_insensitively_unless_the_entry_says_otherwise() -> None:
    """A plain key matches in any case; a case-sensitive one only as written."""
    loose = book(entry(["Dragon"], "Dragons sleep."))
    strict = book(entry(["Dragon"], "Dragons sleep.", case_sensitive=True))
    assert lore(loose, recent=["a DRAGON!"]) == ("Dragons sleep.",)
    assert lore(strict, recent=["a DRAGON!"]) == ()
    assert lore(strict, recent=["a Dragon!"]) == ("Dragons sleep.",)


def test_only_the_last_messages_are_scanned() -> None:
    """The book's scan_depth, else the caller's, counts messages back from the newest."""
    entries = entry(["gold"], "Gold is cursed.")
    assert lore(book(entries), recent=["gold", "a", "b"], depth=2) == ()
    assert lore(book(entries), recent=["gold", "a", "b"], depth=3) == ("Gold is cursed.",)
    assert lore(book(entries, scan_depth=3), recent=["gold", "a", "b"], depth=1) == ("Gold is cursed.",)


def test_constant_entries_always_come_and_disabled_or_regex_ones_never() -> None:
    """constant needs no key; enabled false and use_regex (not run: it could stall the bot) never trigger."""
    found = book(
        entry([], "Always.", constant=True),
        entry(["x"], "Off.", enabled=False),
        entry(["x"], "Regex.", use_regex=True),
        entry(["x"], "Plain."),
    )
    assert lore(found, recent=["x"]) == ("Always.", "Plain.")


def test_selective_entries_need_a_secondary_key_too() -> None:
    """selective with secondary_keys: one of each list must appear."""
    found = book(entry(["king"], "The king is dead.", selective=True, secondary_keys=["crown", "throne"]))
    assert lore(found, recent=["the king"]) == ()
    assert lore(found, recent=["the king", "his throne"]) == ("The king is dead.",)


def test_entries_are_ordered_by_insertion_order_before_char_ones_first() -> None:
    """Lower insertion_order is inserted higher; before_char entries precede the others."""
    found = book(
        entry([], "c", constant=True, insertion_order=3),
        entry([], "a", constant=True, insertion_order=1),
        entry([], "b", constant=True, insertion_order=9, position="before_char"),
    )
    assert lore(found, recent=[]) == ("b", "a", "c")


def test_the_budget_keeps_high_priority_then_high_insertion_order() -> None:
    """Past the budget, lower priority goes first, then lower insertion_order; a smaller entry may still fit."""
    found = book(
        entry([], "one two three", constant=True, insertion_order=1, priority=5),
        entry([], "four five six", constant=True, insertion_order=9),
        entry([], "seven eight", constant=True, insertion_order=2),
        entry([], "nine", constant=True, insertion_order=0),
    )
    # Each entry costs its words and a line break: 4, 4, 3 and 2.
    assert lore(found, recent=[], budget=10) == ("nine", "one two three", "four five six")
    assert lore(found, recent=[], budget=7) == ("one two three", "seven eight")


def test_a_books_own_token_budget_limits_its_entries() -> None:
    """token_budget caps one book's entries even when the scene's budget is larger."""
    first = book(entry([], "aa bb cc", constant=True), entry([], "dd", constant=True), token_budget=4)
    second = book(entry([], "ee ff", constant=True))
    assert lore(first, second, recent=[], budget=100) == ("aa bb cc", "ee ff")


def test_macros_are_filled_in_keys_and_content_and_decorators_dropped() -> None:
    """{{char}} works in a key and in the text; V3's @@ decorator lines are not text."""
    found = book(entry(["{{char}}'s ring"], "@@depth 4\n@@role system\n{{char}} never removes it."))
    assert lore(found, recent=["Mira's ring glints"]) == ("Mira never removes it.",)


def test_a_malformed_book_is_read_leniently() -> None:
    """Bad entries are skipped, bad numbers take defaults; a book with nothing usable is None."""
    assert read_lorebook({"entries": "nope"}) is None
    assert read_lorebook({"entries": [1, {"keys": ["x"]}, {"content": ""}]}) is None
    found = read_lorebook({"entries": [{"keys": "x", "content": "ok", "insertion_order": "high"}], "scan_depth": -1})
    assert found is not None and found.scan_depth is None
    assert found.entries[0].keys == () and found.entries[0].insertion_order == 0
