"""When a run's attempt checkpoints (its training state and model, to Redis), by FF_CHECKPOINT_INTERVAL_S.

A checkpoint writes the whole training state and the model as single values (34 MB for the reference
network); on a GPU an epoch of it takes well under a second, so writing at every epoch end would cost
more than the training. An epoch end therefore checkpoints only when the interval has passed since the
attempt's last checkpoint was written (or it has none yet), and the run's last epoch always does: the
finished model must be stored. A stop (cancel, prune) after an epoch end that went unsaved checkpoints
where it stopped, so that the stored model is never older than the last epoch the run completed; a
warm shutdown saves where it stands in any case. An interval of 0 checkpoints every epoch end.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from ffcore import Trainer


class CheckpointSchedule:
    """Decides which epoch ends `save` (the attempt's checkpoint write) runs at.

    `epoch_ended` is the Trainer's `on_epoch_end`; `clock` is monotonic seconds (tests pass their own).
    """

    def __init__(
        self,
        save: Callable[[Trainer], None],
        interval_s: float,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._save = save
        self.interval_s = interval_s
        self._clock = clock
        self._saved_at: float | None = None  # when this attempt's last checkpoint was written
        self.behind = False  # an epoch end since the last checkpoint went unsaved

    def epoch_ended(self, trainer: Trainer) -> None:
        last_epoch = trainer.epoch >= trainer.config.epochs
        due = self._saved_at is None or self._clock() - self._saved_at >= self.interval_s
        if last_epoch or due:
            self.save(trainer)
        else:
            self.behind = True

    def save(self, trainer: Trainer) -> None:
        """Checkpoint now, whatever the timer says."""
        self._save(trainer)
        # Counted from the end of the write: the interval is training time, however long Redis took.
        self._saved_at = self._clock()
        self.behind = False

    def catch_up(self, trainer: Trainer) -> bool:
        """At a stop: checkpoint where training stands if an epoch end went unsaved; True if it did."""
        if not self.behind:
            return False
        self.save(trainer)
        return True
