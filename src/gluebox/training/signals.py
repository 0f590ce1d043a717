"""SIGINT (Ctrl+C) and SIGTERM (``docker stop``): stop a run at the next batch boundary, resumably.

The first signal only raises a flag. The training loop sees it when the current batch
ends, saves ``last.ckpt`` and stops the run with :class:`~gluebox.errors.RunInterrupted`
(exit code 130 for SIGINT, 143 for SIGTERM). A second signal stops the run at once,
keeping the previous checkpoint. In a multi-process run, the processes agree on the signal any of
them got and stop after the same step (:func:`gluebox.training.distributed.agreed_signal`).
"""

from __future__ import annotations

import signal
import threading

from gluebox.errors import RunInterrupted

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequest:
    """Remembers the first stop signal; raises on the second."""

    def __init__(self):
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    @property
    def requested(self) -> bool:
        return self.signum is not None

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum is not None else ""

    def install(self) -> None:
        """Handle SIGINT and SIGTERM from now on (main thread only; elsewhere it does nothing)."""
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in SIGNALS:
            current = signal.getsignal(signum)
            if current != self._handle and signum not in self._previous:
                self._previous[signum] = current
            signal.signal(signum, self._handle)

    def uninstall(self) -> None:
        """Put back the handlers that were there before :meth:`install`."""
        if threading.current_thread() is not threading.main_thread():
            return
        for signum, handler in self._previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        self._previous = {}

    def ignore_from_now(self) -> None:
        """SIGINT and SIGTERM do nothing from now on, to the end of the process (:meth:`uninstall` leaves it so).

        For the processes of a multi-process run that stopped together, after their checkpoint: each is
        exiting with its own code, and a launcher's signal must not cut that short (torchrun sends SIGTERM
        to the others as soon as one process exits with a code other than 0)."""
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in SIGNALS:
            signal.signal(signum, signal.SIG_IGN)
        self._previous = {}

    def _handle(self, signum, frame) -> None:
        if self.signum is not None:
            raise RunInterrupted(
                f"stopped at once by a second {signal.Signals(signum).name}; the last checkpoint is kept", signum
            )
        self.signum = signum
