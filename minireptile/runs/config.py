"""The configuration of a few-shot meta-training run, and the learner it builds.

:class:`TrainConfig` holds the reference's training settings (``supervised_reptile/args.py``)
with its defaults; :func:`make_learner` turns one into a
:class:`~minireptile.problems.fewshot.FewShotLearner`.
"""

from dataclasses import asdict, dataclass, fields

import numpy as np

from ..algorithms.combinations import parse_combination
from ..algorithms.directions import MAML, FirstOrderMAML, GradientCombination, Reptile
from ..algorithms.meta_iteration import make_outer
from ..data.augment import (
    DEFAULT_ROTATION,
    DEFAULT_SCALE,
    DEFAULT_SHEAR,
    DEFAULT_TRANSLATE,
    AffineAugmentation,
)
from ..errors import InputError
from ..problems.fewshot import FewShotLearner, InnerConfig

@dataclass
class TrainConfig:
    """The reference's training flags (``supervised_reptile/args.py``) and their defaults."""

    classes: int = 5
    shots: int = 5
    train_shots: int = 0
    inner_batch: int = 5
    inner_iters: int = 20
    replacement: bool = False
    learning_rate: float = 1e-3
    meta_step: float = 0.1
    meta_step_final: float = 0.1
    meta_batch: int = 1
    meta_iters: int = 400000
    eval_batch: int = 5
    eval_iters: int = 50
    eval_interval: int = 10
    weight_decay: float = 1.0
    transductive: bool = False
    foml: bool = False
    foml_tail: int = 0
    maml: bool = False
    sgd: bool = False
    seed: int = 0
    outer: str = "sgd"
    combination: str = ""
    checkpoint_interval: int = 100
    # Beyond the reference: Lake's within-alphabet tasks and Koch et al.'s affine distortions
    # (see minireptile.data.alphabets and minireptile.data.augment).
    within_alphabet: bool = False
    augment: bool = False
    augment_rotation: float = DEFAULT_ROTATION
    augment_shear: float = DEFAULT_SHEAR
    augment_scale: float = DEFAULT_SCALE
    augment_translate: float = DEFAULT_TRANSLATE

    def validate(self, train_classes=None, test_classes=None):
        """Raise :class:`InputError` for the first impossible setting."""
        for f in fields(self):
            value = getattr(self, f.name)
            if f.type in ("int", int) and (not isinstance(value, (int, np.integer))
                                          or isinstance(value, bool)):
                raise InputError(f"{_flag(f.name)} must be an integer, got {value!r}")
        for name in ("classes", "shots", "inner_batch", "inner_iters", "meta_batch", "meta_iters",
                     "eval_batch", "eval_iters", "eval_interval", "checkpoint_interval"):
            if getattr(self, name) < 1:
                raise InputError(f"{_flag(name)} must be >= 1, got {getattr(self, name)}")
        for name in ("train_shots", "foml_tail", "seed"):
            if getattr(self, name) < 0:
                raise InputError(f"{_flag(name)} must be >= 0, got {getattr(self, name)}")
        for name in ("learning_rate", "meta_step", "meta_step_final", "weight_decay"):
            value = getattr(self, name)
            if not isinstance(value, (int, float, np.floating, np.integer)) \
                    or not np.isfinite(value):
                raise InputError(f"{_flag(name)} must be a finite number, got {value!r}")
        if not self.learning_rate > 0:
            raise InputError(f"--learning-rate must be positive, got {self.learning_rate}")
        if not self.meta_step > 0 or not self.meta_step_final >= 0:
            raise InputError(f"--meta-step must be > 0 and --meta-step-final >= 0, got "
                             f"{self.meta_step} and {self.meta_step_final}")
        if not 0 < self.weight_decay <= 1:
            raise InputError(f"--weight-decay is a rate in (0, 1] (1 = none), got "
                             f"{self.weight_decay}")
        if self.maml:
            if self.foml or self.combination:
                raise InputError(f"--maml excludes {'--foml' if self.foml else '--combination'}"
                                 "; choose one algorithm")
            if not self.sgd or self.weight_decay != 1:
                raise InputError("--maml needs --sgd and no --weight-decay: its meta-gradient "
                                 "differentiates plain inner SGD steps, not inner Adam")
        if self.foml_tail and not self.foml:
            raise InputError("--foml-tail needs --foml")
        if self.combination:
            if self.foml:
                raise InputError("--combination and --foml exclude each other; "
                                 "--foml is the combination 'last'")
            if not self.sgd or self.weight_decay != 1:
                raise InputError("--combination needs --sgd and no --weight-decay: only then "
                                 "do the inner gradients add up to W − Φ")
            parse_combination(self.combination).coefficients(self.inner_iters)
        make_outer(self.outer)
        self.augmentation(check=True)
        for split, classes in (("training", train_classes), ("test", test_classes)):
            if classes is not None and self.classes > len(classes):
                raise InputError(f"--classes {self.classes} is more than the {len(classes)} "
                                 f"classes of the {split} split; use at most {len(classes)}")
        return self

    @property
    def effective_train_shots(self):
        """``--train-shots`` when given (non-zero), else ``--shots``, as the reference."""
        return self.train_shots or self.shots

    def augmentation(self, check=False):
        """The :class:`AffineAugmentation` of training tasks, or None without ``augment``
        (the ranges are checked either way when ``check``)."""
        if not (self.augment or check):
            return None
        ranges = AffineAugmentation(self.augment_rotation, self.augment_shear,
                                    self.augment_scale, self.augment_translate)
        return ranges if self.augment else None

    def algorithm(self):
        """The algorithm the flags choose (:mod:`minireptile.algorithms.directions`)."""
        if self.combination:
            return GradientCombination(self.combination)
        if self.maml:
            return MAML()
        return FirstOrderMAML(self.foml_tail or None) if self.foml else Reptile()

    def inner(self):
        return InnerConfig(learning_rate=self.learning_rate, sgd=self.sgd, batch=self.inner_batch,
                           iters=self.inner_iters, replacement=self.replacement,
                           weight_decay=self.weight_decay)

    def to_dict(self):
        return asdict(self)

    @classmethod
    def from_dict(cls, values):
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})


def _flag(name):
    return "--" + name.replace("_", "-")


def make_learner(model, phi, config):
    """A :class:`FewShotLearner` configured by ``config``."""
    return FewShotLearner(model, phi, config.inner(), outer=make_outer(config.outer),
                          algorithm=config.algorithm(), augmentation=config.augmentation())
