import pytest

from scheduler.clock import RealClock, VirtualClock


def test_virtual_clock_moves_only_when_told():
    clock = VirtualClock(5.0)
    assert clock.now() == 5.0
    clock.sleep(0.25)
    assert clock.now() == 5.25
    clock.advance_to(4.0)  # never backwards
    assert clock.now() == 5.25
    clock.advance_to(6.0)
    assert clock.now() == 6.0
    with pytest.raises(AssertionError):
        clock.sleep(-1.0)


def test_real_clock_is_monotonic():
    clock = RealClock()
    a = clock.now()
    clock.sleep(0.001)
    assert clock.now() > a
