"""``signet serve``'s shutdown timeline: every deadline falls inside the grace, in order."""

from __future__ import annotations

import pytest

from webhook.server.workers import ShutdownDeadlines


@pytest.mark.parametrize("grace", [0.2, 1, 2.5, 3, 10, 25, 300])
def test_the_watchdog_then_the_kill_come_before_the_grace_ends(grace: float) -> None:
    deadlines = ShutdownDeadlines.within(grace)
    assert 0 < deadlines.watchdog < deadlines.kill < grace
    assert deadlines.drain >= 1


def test_a_long_grace_leaves_the_drain_most_of_it() -> None:
    # Admissions have an 8 s deadline by default: a 10 s grace lets them finish.
    assert ShutdownDeadlines.within(10).drain == 8 and ShutdownDeadlines.within(20).drain == 18
