"""SIGINT and SIGTERM become `Interrupted` during a run, and a step that must stay whole holds them until it ends."""

from __future__ import annotations

import os
import signal

import pytest

from percepiano_parity.core.interrupts import Interrupted, active, deferred_signals, signals_as_interrupted


def _spin() -> None:
    for _ in range(10_000):  # Python runs signal handlers between bytecodes
        pass


@pytest.mark.parametrize("signum, code, word", [(signal.SIGINT, 130, "interrupted"),
                                                (signal.SIGTERM, 143, "terminated")])
def test_signals_raise_interrupted_and_the_handlers_come_back(signum, code, word):
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    with pytest.raises(Interrupted) as info, signals_as_interrupted():
        assert active()
        os.kill(os.getpid(), signum)
        _spin()
    assert (info.value.exit_code, info.value.word) == (code, word)
    assert isinstance(info.value, KeyboardInterrupt)
    assert {s: signal.getsignal(s) for s in before} == before and not active()


def test_nested_use_keeps_the_outer_handlers():
    with signals_as_interrupted():
        handler = signal.getsignal(signal.SIGINT)
        with signals_as_interrupted():
            assert signal.getsignal(signal.SIGINT) is handler
        assert signal.getsignal(signal.SIGINT) is handler


def test_an_ignored_signal_stays_ignored():
    previous = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        with signals_as_interrupted():
            assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_deferred_signals_finish_the_block_then_deliver():
    done = []
    with pytest.raises(Interrupted), signals_as_interrupted():
        with deferred_signals():
            os.kill(os.getpid(), signal.SIGTERM)
            _spin()
            done.append("first half")
            _spin()
            done.append("second half")
        done.append("after the block")  # never reached: the held signal is delivered when the block ends
    assert done == ["first half", "second half"]


def test_deferred_signals_without_a_signal_change_nothing():
    with signals_as_interrupted():
        handler = signal.getsignal(signal.SIGINT)
        with deferred_signals():
            _spin()
        assert signal.getsignal(signal.SIGINT) is handler
