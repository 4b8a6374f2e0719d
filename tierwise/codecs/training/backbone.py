"""The backbone contract: what a frozen network gives the codecs trained at its splits.

A job (:mod:`tierwise.codecs.training.job`) needs one thing from a backbone: a
:class:`~tierwise.codecs.training.job.Prepared` for a split point, that is the training
inputs' features there, the frozen rest of the network, and the held-out sets the card
measures on. Which network, which data, labels or not: that is each backbone's own
business. :mod:`tierwise.codecs.training.backbone_registry` makes one by name.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from tierwise.codecs.base import TrainedCodec
from tierwise.codecs.training.bottleneck_training import CompressConfig
from tierwise.codecs.training.job import Prepared, Step, fit_job, run_job


class Backbone(ABC):
    """A frozen network and the data its codecs learn from and are measured on."""

    @abstractmethod
    def prepare(self, split: int, step: Step = lambda *_: None) -> Prepared:
        """The training features at ``split``, the frozen tail, and the held-out sets."""

    def train(
        self,
        config: CompressConfig,
        variants: tuple[tuple[float, str], ...],
        step: Step = lambda *_: None,
    ) -> list[TrainedCodec]:
        """A learned bottleneck per (β, name) at ``config.split``, each measured."""
        return run_job(self.prepare(config.split, step), config, variants, step)

    def fit(
        self, split: int, variants: tuple[tuple[int, str], ...], step: Step = lambda *_: None
    ) -> list[TrainedCodec]:
        """A fitted quantizer per (bits, name) at ``split``, each measured."""
        return fit_job(self.prepare(split, step), variants, step)
