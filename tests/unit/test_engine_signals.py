"""SIGTERM/SIGINT during a run ask it to stop (once); a second signal gives up at once."""

from __future__ import annotations

import os
import signal

import pytest

from etl.engine.control import RunControl
from etl.engine.signals import stop_on_signals


@pytest.mark.parametrize("sig, name", [(signal.SIGTERM, "SIGTERM"), (signal.SIGINT, "SIGINT")])
def test_a_signal_asks_the_run_to_stop_and_the_old_handler_comes_back(sig, name):
    before = signal.getsignal(sig)
    control = RunControl(max_in_flight=1)
    with stop_on_signals(control):
        os.kill(os.getpid(), sig)
        assert control.stopping
    assert (control.stop_reason.kind, control.stop_reason.message) == ("signal", f"stopped by {name}")
    assert signal.getsignal(sig) is before


def test_a_second_signal_while_stopping_interrupts():
    control = RunControl(max_in_flight=1)
    with pytest.raises(KeyboardInterrupt, match="second SIGTERM: stopping at once"):
        with stop_on_signals(control):
            os.kill(os.getpid(), signal.SIGTERM)
            assert control.stopping
            os.kill(os.getpid(), signal.SIGTERM)


def test_a_stop_for_another_reason_is_kept():
    control = RunControl(max_in_flight=1)
    control.stop("max_rejects", "too many rejected records: 5 of 10 extracted")
    with stop_on_signals(control):
        os.kill(os.getpid(), signal.SIGTERM)
    assert control.stop_reason.kind == "max_rejects"
