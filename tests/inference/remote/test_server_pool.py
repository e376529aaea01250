"""The server pool's choice: least loaded, failed servers paused, one probe at a time after the pause."""

from __future__ import annotations

from bot.inference.servers import ServerPool


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def pool(clock: Clock, count: int = 2) -> ServerPool:
    return ServerPool([f"http://s{i}/v1" for i in range(count)], retry_after=5, clock=clock)


def test_least_in_flight_wins() -> None:
    """The server with fewer requests in flight is chosen, whatever the order."""
    servers = pool(Clock(), 3)
    first, second, third = servers.servers
    first.in_flight, second.in_flight, third.in_flight = 2, 0, 1
    assert servers.choose() is second


def test_failed_server_skipped_during_its_pause() -> None:
    """A failed server is passed over until ``retry_after`` has gone by, even when less loaded."""
    clock = Clock()
    servers = pool(clock)
    first, second = servers.servers
    second.in_flight = 4
    servers.failed(first)
    clock.now += 4.9
    assert servers.choose() is second
    clock.now += 0.2
    assert servers.choose() is first


def test_one_probe_at_a_time_after_the_pause() -> None:
    """Past its pause a failed server takes one request; a second waits until it has answered."""
    clock = Clock()
    servers = pool(clock)
    first, second = servers.servers
    servers.failed(first)
    clock.now += 6
    assert servers.choose() is first
    first.in_flight = 1
    second.in_flight = 3
    assert servers.choose() is second
    servers.answered(first)
    assert servers.choose() is first


def test_all_down_picks_the_pause_ending_first() -> None:
    """When every server is down, the request goes to the one whose pause ends first."""
    clock = Clock()
    servers = pool(clock)
    first, second = servers.servers
    servers.failed(second)
    clock.now += 1
    servers.failed(first)
    assert servers.choose() is second


def test_excluded_servers_are_not_chosen() -> None:
    """A server already tried for this request is not chosen again; none left gives None."""
    servers = pool(Clock())
    first, second = servers.servers
    assert (servers.choose([first]), servers.choose([first, second])) == (second, None)
