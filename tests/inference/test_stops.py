"""Stop sequences on streamed text."""

from __future__ import annotations

from bot.inference.stops import StopMatcher


def test_partial_stop_is_held_back_across_deltas():
    """Text that may start a stop sequence is held until the next delta decides."""
    matcher = StopMatcher(["USER:"])

    assert matcher.feed("Hello US") == "Hello "
    assert matcher.feed("E") == ""
    assert matcher.feed("R: next") == ""
    assert matcher.stopped


def test_held_text_is_released_when_no_stop_follows():
    """A held prefix comes out with the next delta once it cannot be a stop any more."""
    matcher = StopMatcher(["USER:"])

    assert matcher.feed("Hello US") == "Hello "
    assert matcher.feed("A!") == "USA!"
    assert not matcher.stopped


def test_text_is_cut_at_the_first_stop():
    """Of several stops, the one that appears first in the text ends it, whatever their order."""
    matcher = StopMatcher(["END", "###"])

    assert matcher.feed("one ### two END") == "one "
    assert matcher.stopped


def test_nothing_comes_out_after_a_stop():
    """Once stopped, further deltas and the flush give nothing."""
    matcher = StopMatcher(["\n\n"])
    matcher.feed("a\n\nb")

    assert matcher.feed("more") == ""
    assert matcher.flush() == ""


def test_flush_returns_the_held_text_when_no_stop_came():
    """When generation ends without a stop, the held-back prefix is given back."""
    matcher = StopMatcher(["USER:"])
    matcher.feed("The end. USE")

    assert matcher.flush() == "USE"


def test_no_stops_pass_everything_through():
    """With no stop sequences (or only empty ones) every delta is shown at once."""
    matcher = StopMatcher(["", *()])

    assert matcher.feed("USER: hi") == "USER: hi"
    assert matcher.flush() == ""
