"""The access gate's rules and its per-user sliding window, without Discord."""

from __future__ import annotations

import pytest

from bot.config import AccessConfig
from bot.frontends.discord.app.access import (
    BLOCKED,
    NO_DMS,
    NO_ROLE,
    OTHER_CHANNEL,
    OTHER_SERVER,
    Access,
    RateLimited,
    SlidingWindow,
)

GUILD, CHANNEL, ROLE = 100, 200, 300


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_window_admits_up_to_the_limit_then_says_how_long_to_wait() -> None:
    """Three hits fit in 60 s; the fourth is told when the oldest leaves the window."""
    clock = Clock()
    window = SlidingWindow(3, 60.0, clock=clock)
    for _ in range(3):
        assert window.hit(1) == 0.0
        clock.now += 10
    assert window.hit(1) == 30.0  # the first hit, at 1000, leaves at 1060; now is 1030


def test_the_window_slides_instead_of_resetting() -> None:
    """Once the oldest hit is 60 s old one more fits, but not two (a fixed window would allow a burst)."""
    clock = Clock()
    window = SlidingWindow(2, 60.0, clock=clock)
    window.hit(1)
    clock.now += 30
    window.hit(1)
    clock.now += 30
    assert window.hit(1) == 0.0
    assert window.hit(1) == 30.0


def test_a_refused_hit_is_not_counted() -> None:
    """Retrying while refused does not push the wait further out."""
    clock = Clock()
    window = SlidingWindow(1, 60.0, clock=clock)
    window.hit(1)
    for _ in range(5):
        clock.now += 10
        window.hit(1)
    clock.now += 10
    assert window.hit(1) == 0.0


def test_each_person_has_their_own_window() -> None:
    """One person at the limit does not slow another down."""
    window = SlidingWindow(1, 60.0, clock=Clock())
    window.hit(1)
    assert window.hit(1) > 0
    assert window.hit(2) == 0.0


def test_idle_people_are_forgotten() -> None:
    """People with no hit in the window leave the window's memory."""
    clock = Clock()
    window = SlidingWindow(1, 60.0, clock=clock)
    window.hit(1)
    clock.now += 61
    window.hit(2)
    window.forget_idle()
    assert set(window._hits) == {2}


def test_rate_tells_once_per_wait_and_says_when() -> None:
    """Past the limit the refusal names the seconds to wait; repeats during that wait are marked as repeated."""
    clock = Clock()
    access = Access(AccessConfig(requests_per_minute=1), clock=clock)
    assert access.rate(1) is None
    clock.now += 36.5
    first = access.rate(1)
    assert isinstance(first, RateLimited)
    assert str(first) == "You're sending requests too fast; try again in 24 s."
    assert not first.repeated
    clock.now += 5
    again = access.rate(1)
    assert again is not None and again.repeated
    clock.now += 20
    assert access.rate(1) is None


def test_checking_the_rate_counts_nothing() -> None:
    """The gate's look (check_rate) never uses up the limit; only counting does."""
    access = Access(AccessConfig(requests_per_minute=1), clock=Clock())
    assert all(access.check_rate(1) is None for _ in range(5))
    assert access.rate(1) is None
    limited = access.check_rate(1)
    assert isinstance(limited, RateLimited) and str(limited).startswith("You're sending requests too fast")


def test_a_refund_gives_the_latest_hit_back() -> None:
    """A refunded hit frees its place in the window at once."""
    window = SlidingWindow(1, 60.0, clock=Clock())
    window.hit(1)
    window.refund(1)
    assert window.hit(1) == 0.0
    assert window.hit(1) > 0


def test_the_scheduler_meter_counts_by_discord_id() -> None:
    """As the scheduler's meter, Access counts each model call of a person (their id as text) and refuses past it."""
    access = Access(AccessConfig(requests_per_minute=2), clock=Clock())
    access.count("1")
    access.count("1")
    with pytest.raises(RateLimited):
        access.count("1")
    access.refund("1")
    access.count("1")
    assert access.check_rate(1) is not None and access.check_rate(2) is None


def test_zero_requests_per_minute_turns_the_limit_off() -> None:
    """requests_per_minute = 0: nobody is ever limited."""
    access = Access(AccessConfig(requests_per_minute=0))
    assert all(access.rate(1) is None for _ in range(100))


def test_an_empty_config_serves_everyone_everywhere() -> None:
    """The defaults restrict nothing."""
    access = Access(AccessConfig())
    assert access.refusal(1, [], GUILD, CHANNEL) is None
    assert access.refusal(1, [], None, None) is None


def test_blocked_users_are_refused_everywhere() -> None:
    """A blocked person is refused in servers and in DMs."""
    access = Access(AccessConfig(blocked_users=[1]))
    assert access.refusal(1, [ROLE], GUILD, CHANNEL) == BLOCKED
    assert access.refusal(1, [], None, None) == BLOCKED
    assert access.refusal(2, [], GUILD, CHANNEL) is None


def test_other_servers_and_channels_are_refused() -> None:
    """Only the allowed servers and channels are served."""
    access = Access(AccessConfig(allowed_guilds=[GUILD], allowed_channels=[CHANNEL]))
    assert access.refusal(1, [], GUILD, CHANNEL) is None
    assert access.refusal(1, [], GUILD + 1, CHANNEL) == OTHER_SERVER
    assert access.refusal(1, [], GUILD, CHANNEL + 1) == OTHER_CHANNEL
    assert access.serves_guild(GUILD) and not access.serves_guild(GUILD + 1)


def test_allowed_roles_need_one_of_them() -> None:
    """With allowed_roles a member needs one of those roles."""
    access = Access(AccessConfig(allowed_roles=[ROLE]))
    assert access.refusal(1, [GUILD, ROLE], GUILD, CHANNEL) is None
    assert access.refusal(1, [GUILD], GUILD, CHANNEL) == NO_ROLE


def test_dms_follow_allow_dms_only() -> None:
    """DMs are served unless allow_dms is false, whatever the server rules say."""
    assert Access(AccessConfig(allowed_roles=[ROLE], allowed_channels=[CHANNEL])).refusal(1, [], None, None) is None
    assert Access(AccessConfig(allow_dms=False)).refusal(1, [], None, None) == NO_DMS
