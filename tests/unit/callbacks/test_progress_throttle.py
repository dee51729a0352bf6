"""The interactive progress bar reads the logged metrics (a host sync) at most every
``min_interval_s`` seconds and at an epoch's last batch, not after every batch."""

from __future__ import annotations

from pytorch_lightning.callbacks import RichProgressBar

from ldmlab.callbacks import progress


def test_the_rich_bar_redraws_on_a_clock_not_per_batch(monkeypatch):
    now, drawn = [100.0], []
    monkeypatch.setattr(progress.time, "monotonic", lambda: now[0])
    monkeypatch.setattr(RichProgressBar, "on_train_batch_end",
                        lambda self, trainer, module, outputs, batch, batch_idx: drawn.append(batch_idx))
    monkeypatch.setattr(progress.ThrottledRichProgressBar, "total_train_batches", 10)
    bar = progress.ThrottledRichProgressBar(min_interval_s=0.5)
    for batch_idx in range(10):  # 0.2 s per batch
        bar.on_train_batch_end(None, None, None, None, batch_idx)
        now[0] += 0.2
    assert drawn == [0, 3, 6, 9]  # t = 100, 100.6, 101.2 and the last batch (101.8 - 101.2 < 0.5)
