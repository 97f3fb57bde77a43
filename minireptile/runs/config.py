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
from ..data.classes import augment_mirrors
from ..errors import InputError
from ..problems.augment import (
    DEFAULT_ROTATION,
    DEFAULT_SCALE,
    DEFAULT_SHEAR,
    DEFAULT_TRANSLATE,
    INTERPOLATIONS,
    AffineAugmentation,
)
from ..problems.fewshot import FewShotLearner, InnerConfig
from ..settings import (
    COUNT,
    COUNT_OR_ZERO,
    FLAG,
    NON_NEGATIVE,
    POSITIVE,
    TEXT,
    Kind,
    check_settings,
    choice,
    setting,
)

# A bound on --image-size, so that a mistyped size is refused before the images are decoded.
MAX_IMAGE_SIZE = 256


@dataclass
class TrainConfig:
    """The reference's training settings (``supervised_reptile/args.py``), with its defaults,
    and those minireptile adds. Each is declared once here; ``minireptile train`` makes its
    flags from these declarations (``--name-with-dashes``). The inner loop's defaults are
    :class:`InnerConfig`'s, which :meth:`inner` fills from these settings."""

    seed: int = setting(0, COUNT_OR_ZERO, "random seed")
    classes: int = setting(5, COUNT, "classes per task, N")
    shots: int = setting(5, COUNT, "examples per class in evaluation tasks, K")
    train_shots: int = setting(0, COUNT_OR_ZERO, "examples per class in training tasks "
                                                 "(0: as shots)")
    inner_batch: int = setting(InnerConfig.batch, COUNT, "inner mini-batch size")
    inner_iters: int = setting(InnerConfig.iters, COUNT, "inner steps per task")
    replacement: bool = setting(InnerConfig.replacement, FLAG,
                                "sample inner mini-batches with replacement")
    learning_rate: float = setting(InnerConfig.learning_rate, POSITIVE,
                                   "inner Adam/SGD step size")
    eval_batch: int = setting(5, COUNT, "mini-batch size when fine-tuning for evaluation")
    eval_iters: int = setting(50, COUNT, "fine-tuning steps for evaluation")
    weight_decay: float = setting(
        InnerConfig.weight_decay, Kind("float", minimum=0, maximum=1, above_minimum=True),
        "multiply the weights by this rate before every inner step (1: none)")
    transductive: bool = setting(False, FLAG, "classify all query images in one batch (batch "
                                              "norm sees them all)")
    sgd: bool = setting(InnerConfig.sgd, FLAG, "inner SGD instead of Adam (beta1 = 0)")
    meta_step: float = setting(0.1, POSITIVE, "outer step size at the start")
    meta_step_final: float = setting(0.1, NON_NEGATIVE, "outer step size at the end, "
                                                        "annealed linearly")
    meta_batch: int = setting(1, COUNT, "tasks per outer step")
    meta_iters: int = setting(400000, COUNT, "outer steps")
    eval_interval: int = setting(10, COUNT, "iterations between evaluations during training")
    foml: bool = setting(False, FLAG, "first-order MAML instead of Reptile")
    foml_tail: int = setting(0, COUNT_OR_ZERO, "first-order MAML: examples per class held out "
                                               "for the final inner step (0: none)")
    maml: bool = setting(False, FLAG, "second-order MAML (exact meta-gradient through the "
                                      "inner SGD steps; needs sgd)")
    combination: str = setting("", TEXT, "meta-gradient from inner gradients, e.g. g1+g2, "
                                         "(g1+g2)/2, g2, reptile, last (empty: plain Reptile, "
                                         "or FOMAML with foml)", metavar="NAME")
    outer: str = setting("sgd", choice("adam", "sgd"), "outer update: sgd = Φ+ε(W̄−Φ); adam = "
                                                      "Adam on Φ−W̄")
    checkpoint_interval: int = setting(100, COUNT, "iterations between checkpoints")
    snapshot_at: int = setting(
        0, COUNT_OR_ZERO, "also keep the run as it stood after this many iterations, in the "
                          "run folder's snapshot-N: a run folder of its own, for evaluation or "
                          "as another member of an ensemble (0: none)", metavar="N")
    filters: int = setting(0, COUNT_OR_ZERO, "channels of every convolution of the network "
                                             "(0: the reference's, 64 for Omniglot and 32 for "
                                             "Mini-ImageNet)")
    image_size: int = setting(
        0, Kind("int", minimum=0, maximum=MAX_IMAGE_SIZE),
        "side of the square images the network sees, in pixels: every image is shrunk to it "
        "(0: the reference's, 28 for Omniglot and 84 for Mini-ImageNet)", metavar="PIXELS")
    # Beyond the reference: Lake's within-alphabet tasks and Koch et al.'s affine distortions
    # (see minireptile.data.alphabets and minireptile.problems.augment).
    within_alphabet: bool = setting(
        False, FLAG, "draw the N classes of every task from one alphabet, chosen uniformly "
                     "among those with at least N classes (Lake's one-shot runs)")
    mirror_classes: bool = setting(
        False, FLAG, "add every training class's mirror image (flipped left to right) as a "
                     "class of its own, doubling the training classes; test classes are never "
                     "mirrored")
    augment: bool = setting(False, FLAG, "distort every training image with a random affine "
                                         "map (Koch et al. 2015); evaluation images are never "
                                         "distorted")
    eval_augment: bool = setting(
        False, FLAG, "when fine-tuning for evaluation, distort the support images afresh at "
                     "every step with the augmentation ranges; the queries are never distorted")
    augment_rotation: float = setting(
        DEFAULT_ROTATION, Kind("float", minimum=0, maximum=180, below_maximum=True),
        "largest rotation in degrees", metavar="DEG")
    augment_shear: float = setting(
        DEFAULT_SHEAR, Kind("float", minimum=0, maximum=1, below_maximum=True),
        "largest shear factor")
    augment_scale: float = setting(
        DEFAULT_SCALE, Kind("float", minimum=0, maximum=1, below_maximum=True),
        "largest relative change of scale (0.2: scales 0.8 to 1.2)")
    augment_translate: float = setting(DEFAULT_TRANSLATE, NON_NEGATIVE,
                                       "largest shift in pixels", metavar="PIXELS")
    augment_interpolation: str = setting(
        "nearest", choice(*INTERPOLATIONS),
        "how a distorted image is resampled: nearest keeps 0/1 images 0/1; bilinear draws "
        "smooth strokes with grey edges")
    # Beyond the reference: supervised pre-training of the body on every training class
    # before meta-training (see minireptile.problems.pretrain).
    pretrain_steps: int = setting(
        0, COUNT_OR_ZERO, "before meta-training, train the network to classify every training "
                          "class at once for this many Adam steps, then meta-train from its "
                          "body with a fresh output layer (0: no pre-training)", metavar="N")
    pretrain_batch: int = setting(64, COUNT, "images per pre-training step", metavar="N")
    pretrain_learning_rate: float = setting(0.001, POSITIVE, "pre-training Adam step size",
                                            metavar="RATE")

    def validate(self, train_classes=None, test_classes=None):
        """Raise :class:`InputError` for the first impossible setting, naming it as
        ``name=value``."""
        check_settings(self)
        plain_sgd = self.inner().plain_sgd
        if self.maml:
            if self.foml or self.combination:
                other = "foml=True" if self.foml else f"combination={self.combination!r}"
                raise InputError(f"maml=True excludes {other}; choose one algorithm")
            if not plain_sgd:
                raise InputError("maml=True needs sgd=True and weight_decay=1: its "
                                 "meta-gradient differentiates plain inner SGD steps, not "
                                 "inner Adam")
        if self.snapshot_at >= self.meta_iters:
            raise InputError(f"snapshot_at={self.snapshot_at}: expected an iteration before "
                             f"the last, below meta_iters={self.meta_iters} (the run's own "
                             "checkpoint holds the last; 0: no snapshot)")
        if self.foml_tail and not self.foml:
            raise InputError(f"foml_tail={self.foml_tail} needs foml=True")
        if self.combination:
            if self.foml:
                raise InputError(f"combination={self.combination!r} and foml=True exclude "
                                 "each other; foml is the combination 'last'")
            if not plain_sgd:
                raise InputError(f"combination={self.combination!r} needs sgd=True and "
                                 "weight_decay=1: only then do the inner gradients add up to "
                                 "W − Φ")
            parse_combination(self.combination).coefficients(self.inner_iters)
        for split, classes in (("training", train_classes), ("test", test_classes)):
            if classes is not None and self.classes > len(classes):
                raise InputError(f"classes={self.classes} is more than the {len(classes)} "
                                 f"classes of the {split} split; use at most {len(classes)}")
        return self

    @property
    def effective_train_shots(self):
        """``train_shots`` when given (non-zero), else ``shots``, as the reference."""
        return self.train_shots or self.shots

    def training_classes(self, classes):
        """The classes to meta-train on: ``classes`` (a ClassSet) with every class's mirror
        image added as a class of its own when ``mirror_classes`` is set. Classes that
        hold mirror images already (a split the command line prepared) are returned as
        they are, so that preparing twice adds nothing."""
        if not self.mirror_classes or classes.mirrored.any():
            return classes
        return augment_mirrors(classes)

    def augmentation(self):
        """The :class:`AffineAugmentation` of training tasks, or None without ``augment``."""
        return self._affine_augmentation() if self.augment else None

    def eval_augmentation(self):
        """The :class:`AffineAugmentation` of fine-tuning at evaluation, or None without
        ``eval_augment``."""
        return self._affine_augmentation() if self.eval_augment else None

    def pretraining(self, model, train_classes):
        """The :class:`~minireptile.problems.pretrain.Pretraining` of ``model`` on
        ``train_classes`` these settings ask for (distorted when ``augment`` is set), drawing
        from a generator of its own (seeded ``seed + 1000``), so the meta-training that
        follows draws what it would without pre-training."""
        from ..problems.pretrain import Pretraining

        return Pretraining(model, train_classes, self.pretrain_batch,
                           self.pretrain_learning_rate, np.random.default_rng(self.seed + 1000),
                           self.augmentation())

    def _affine_augmentation(self):
        return AffineAugmentation(self.augment_rotation, self.augment_shear,
                                  self.augment_scale, self.augment_translate,
                                  interpolation=self.augment_interpolation)

    def algorithm(self):
        """The algorithm these settings choose (:mod:`minireptile.algorithms.directions`)."""
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

    def network_options(self):
        """Keyword arguments of the network builder (``omniglot_cnn``, ``miniimagenet_cnn``)
        beyond the number of classes: only those set, so a builder that takes no others still
        builds the reference network."""
        options = {"filters": self.filters, "image_size": self.image_size}
        return {name: value for name, value in options.items() if value}

    @classmethod
    def from_dict(cls, values):
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})


def make_learner(model, phi, config):
    """A :class:`FewShotLearner` configured by ``config``."""
    return FewShotLearner(model, phi, config.inner(), outer=make_outer(config.outer),
                          algorithm=config.algorithm(), augmentation=config.augmentation(),
                          eval_augmentation=config.eval_augmentation())
