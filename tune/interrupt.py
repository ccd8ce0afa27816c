"""Ctrl-C and SIGTERM stop a search so that the same command resumes it.

Ray Tune catches SIGINT itself, saves the experiment state and returns from `Tuner.fit()` as if
the search had ended, and leaves SIGTERM (what `timeout`, a cluster scheduler or a container stop
send) to kill the process. Here both signals are caught for the whole run:
- during `fit()`, the first one is handed to Tune's own graceful stop (SIGUSR1: Tune saves its
  state one last time and returns), and `signal_number` remembers it so the caller can tell an
  interruption from the end;
- a second one, or one outside `fit()`, raises KeyboardInterrupt at once.
The exit code is then 128 + the signal number (130 for SIGINT, 143 for SIGTERM), as shells use.
"""

from __future__ import annotations

import os
import signal
import threading
from contextlib import contextmanager

CAUGHT = (signal.SIGINT, signal.SIGTERM)


class Interruption:
    def __init__(self) -> None:
        self.signal_number: int | None = None
        self.in_fit = False
        self.previous = {}
        self.deadline_reached = False

    def install(self) -> None:
        """Call again after ray.init: Ray's core worker puts its own SIGTERM handler in place
        (log, then abort: the "Aborted" exit 134)."""
        os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"  # ours forwards to Tune's SIGUSR1 path
        for number in CAUGHT:
            previous = signal.signal(number, self.handle)
            self.previous.setdefault(number, previous)

    def uninstall(self) -> None:
        for number, handler in self.previous.items():
            signal.signal(number, handler)

    def handle(self, number: int, frame) -> None:
        first = self.signal_number is None
        self.signal_number = self.signal_number or number
        if first and self.in_fit:
            print(f"\n{signal.Signals(number).name} received: stopping the search after saving its state "
                  "(send it again to stop at once).", flush=True)
            os.kill(os.getpid(), signal.SIGUSR1)
            return
        raise KeyboardInterrupt

    def stop_after(self, seconds: float) -> None:
        """A deadline Ray Tune cannot be given: a resumed search's new --time-budget (Tuner.restore
        keeps the TuneConfig the search was started with). At it the search stops as at a first
        signal (Tune saves its state and returns), and `deadline_reached` tells the caller why."""

        def expire() -> None:
            if self.in_fit and self.signal_number is None:
                self.deadline_reached = True
                os.kill(os.getpid(), signal.SIGUSR1)

        timer = threading.Timer(seconds, expire)
        timer.daemon = True
        timer.start()

    @contextmanager
    def fitting(self):
        """Around `Tuner.fit()`: the first signal stops Tune gracefully instead of raising."""
        self.in_fit = True
        try:
            yield
        finally:
            self.in_fit = False

    @property
    def interrupted(self) -> bool:
        return self.signal_number is not None

    @property
    def exit_code(self) -> int:
        return 128 + (self.signal_number or signal.SIGINT)

    @property
    def name(self) -> str:
        return signal.Signals(self.signal_number or signal.SIGINT).name
