"""What a fit reports besides its epoch line: progress within long epochs, TensorBoard logs.

:class:`StepProgress` shows a bar on a terminal, or a line every 30 s in a log, during long
training and validation passes; :class:`EpochTensorBoard` is Keras' TensorBoard callback
without its per-batch work. Neither holds state that a resumed run needs
(:mod:`tfrs_movies.train.callbacks` holds that).
"""

from __future__ import annotations

import sys
import time

import tensorflow as tf

from tfrs_movies.log import Log


class EpochTensorBoard(tf.keras.callbacks.TensorBoard):
    """Keras' TensorBoard callback, per epoch only (its default ``update_freq="epoch"``).

    Keras' own batch hooks still passed each batch's losses to ``tf.summary.scalar``, which
    recorded nothing at that frequency but took 0.47 ms a step: 0.49 s of the default ml-100k
    run's 1,032 steps. Those hooks also write the training graph and a profile, which nothing
    here reads; both are off (``write_graph=False``, ``profile_batch=0``).

    Args:
        log_dir: where the event files go.
    """

    def __init__(self, log_dir: str):
        super().__init__(log_dir, write_graph=False, profile_batch=0)

    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        pass

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        pass


class StepProgress(tf.keras.callbacks.Callback):
    """Progress within long epochs: a bar on a terminal, a line every ``interval`` s in a log.

    A line reads ``epoch 1/3 step 4,000/19,532 (20%)  68,000 examples/s  ETA 3m54s`` (examples
    per second and the time left are the epoch's so far), or ``epoch 1/3 validation step ...``
    during the validation pass. Passes shorter than ``interval`` print nothing; the bar is
    erased at the end of each pass, before the epoch's line.

    Args:
        steps_per_epoch: training steps per epoch.
        batch_size: examples per training step.
        epochs: the configured number of epochs.
        log: receives the lines.
        validation_steps: steps of the validation pass, and ``validation_batch_size`` its
            examples per step.
        bar: draw a bar on stdout (redrawn at most every 0.5 s) instead of logging lines.
        interval: seconds between logged lines.
    """

    def __init__(
        self,
        steps_per_epoch: int,
        batch_size: int,
        epochs: int,
        log: Log,
        validation_steps: int = 0,
        validation_batch_size: int = 0,
        bar: bool = False,
        interval: float = 30.0,
    ):
        super().__init__()
        # Keras then hands the batch logs over as tensors without a per-step host sync.
        self._supports_tf_logs = True
        self.steps, self.batch_size, self.epochs = steps_per_epoch, batch_size, epochs
        self.validation_steps, self.validation_batch_size = validation_steps, validation_batch_size
        self.log, self.bar = log, bar
        self.interval = 0.5 if bar else interval
        self._epoch = 0
        self._drawn = False

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._epoch = epoch + 1
        self._started = self._shown = time.perf_counter()

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self._show("step", batch + 1, self.steps, self.batch_size)

    def on_test_begin(self, logs: dict | None = None) -> None:
        self._erase()
        self._started = self._shown = time.perf_counter()

    def on_test_batch_end(self, batch: int, logs: dict | None = None) -> None:
        if self.validation_steps:
            steps, size = self.validation_steps, self.validation_batch_size
            self._show("validation step", batch + 1, steps, size)

    def _show(self, what: str, done: int, total: int, batch_size: int) -> None:
        now = time.perf_counter()
        if now - self._shown < self.interval:
            return
        self._shown = now
        rate = done / (now - self._started)
        eta = int((total - done) / rate) if rate else 0
        text = (
            f"epoch {self._epoch}/{self.epochs} {what} {done:,}/{total:,} "
            f"({100 * done // total}%)  {rate * batch_size:,.0f} examples/s  "
            f"ETA {eta // 60}m{eta % 60:02d}s"
        )
        if self.bar:
            filled = min(30, 30 * done // total)  # of this pass: training or validation
            sys.stdout.write(f"\r[{'#' * filled}{'.' * (30 - filled)}] {text}\x1b[K")
            sys.stdout.flush()
            self._drawn = True
        else:
            self.log(text)

    def on_test_end(self, logs: dict | None = None) -> None:
        self._erase()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self._erase()

    def _erase(self) -> None:
        if self._drawn:
            sys.stdout.write("\r\x1b[K")
            sys.stdout.flush()
            self._drawn = False
