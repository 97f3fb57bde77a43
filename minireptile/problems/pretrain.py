"""Supervised pre-training: the network learns to tell every training class apart at once,
and meta-training then starts from its body with a fresh output layer.

>>> from minireptile import ClassSet, ImagePool, omniglot_cnn
>>> rng = np.random.default_rng(0)
>>> images = (rng.random((6, 4, 16, 16)) < 0.3).astype(np.uint8)   # 6 classes of 4
>>> classes = ClassSet(ImagePool.from_classes([f"c{i}" for i in range(6)], list(images)))
>>> model = omniglot_cnn(3, image_size=16, filters=8)               # the 3-way network
>>> stage = Pretraining(model, classes, batch=8, learning_rate=0.01,
...                     rng=np.random.default_rng(1))
>>> stage.wide.output_shape                                         # one output per class
(6,)
>>> losses = stage.run(30)
>>> bool(np.mean(losses[-5:]) < np.mean(losses[:5]))
True
>>> phi = model.init_params(np.random.default_rng(2))
>>> phi[:model.body_size] = stage.body()                            # a fresh 3-way head

Meta-training sees a few classes at a time and relabels them in every task, so the network's
features only ever have to separate N classes. Trained on all of them together (Chen et al.,
*A Closer Look at Few-shot Classification*, 2019; Tian et al., *Rethinking Few-Shot Image
Classification*, 2020), the body must separate every training class from every other. The
output layer is thrown away: its units are the training classes, which no test task holds.
(On the README's one-shot Omniglot recipe, meta-training from such a body starts far ahead
and ends a little behind meta-training from scratch.)

A step is plain mini-batch training: ``batch`` images drawn without replacement (a fresh
permutation of every training image per epoch, the epoch's last partial batch dropped),
distorted by ``augmentation`` when given, one Adam step on their mean cross-entropy. All draws
come from ``rng``, so a stage resumed from :meth:`state_dict` continues bit for bit.
"""

import numpy as np

from ..algorithms.optim import Adam
from ..errors import InputError, check_generator, check_positive_int


def class_examples(classes):
    """Every image of ``classes``, named by its class's row (the label) and its index within
    the class; :meth:`ClassSet.examples` reads them.

    Returns
    -------
    rows : (n,) int64 in ``0 .. len(classes) - 1``, class by class
    which : (n,) int64, the index of each image within its class
    """
    sizes = [classes.class_size(i) for i in range(len(classes))]
    rows = np.repeat(np.arange(len(classes), dtype=np.int64), sizes)
    which = np.concatenate([np.arange(size, dtype=np.int64) for size in sizes])
    return rows, which


class Pretraining:
    """The state of one pre-training: parameters of the wide network, Adam, the epoch's
    order and the generator.

    Parameters
    ----------
    model : Model
        The network meta-training will use; it must end in a dense layer. The stage trains
        ``model.with_outputs(len(classes))``, drawing its initial parameters from ``rng``.
    classes : ClassSet
        The training classes; each is one output (so rotated copies are classes of their own).
    batch : int
        Images per step (at most all of them: a larger batch takes every image each step).
    learning_rate : float
        Adam's step size (β1 = 0.9, β2 = 0.999).
    rng : numpy.random.Generator
        The stage's own stream: initial weights, epoch orders and distortions.
    augmentation : AffineAugmentation, optional
        Distorts every batch afresh.
    """

    def __init__(self, model, classes, batch, learning_rate, rng, augmentation=None):
        check_positive_int("batch", batch)
        check_generator(rng)
        if len(classes) < 2:
            raise InputError(f"pre-training needs at least 2 training classes, got "
                             f"{len(classes)}")
        self.model = model
        self.wide = model.with_outputs(len(classes))
        self.classes = classes
        # Images are read per batch: converting every training image to floats up front
        # would hold Mini-ImageNet's 38,400 in 3 GB.
        self.labels, self.which = class_examples(classes)
        self.batch = int(batch)
        self.augmentation = augmentation
        self.rng = rng
        self.params = self.wide.init_params(rng)
        self.optimiser = Adam(learning_rate)
        self.order = rng.permutation(len(self.labels))
        self.position = 0
        self.step = 0

    def run(self, steps, on_step=None):
        """Take ``steps`` more steps; return their losses, shape ``(steps,)``.

        ``on_step(stage, loss)`` is called after each, e.g. to checkpoint or show progress.
        """
        losses = np.empty(int(steps))
        for k in range(int(steps)):
            if self.position + self.batch > len(self.order):
                self.order = self.rng.permutation(len(self.labels))
                self.position = 0
            rows = self.order[self.position:self.position + self.batch]
            self.position += len(rows)
            x = self.classes.examples(self.labels[rows], self.which[rows])
            if self.augmentation is not None:
                x = self.augmentation.apply(x, self.rng)
            loss, grad = self.wide.loss_and_grad(self.params, x, self.labels[rows])
            self.optimiser.step(self.params, grad)
            self.step += 1
            losses[k] = loss
            if on_step is not None:
                on_step(self, loss)
        return losses

    def body(self):
        """The trained body: the first ``model.body_size`` parameters, a copy."""
        return self.params[:self.model.body_size].copy()

    def state_dict(self):
        """Arrays and JSON-able values that :meth:`load_state_dict` restores exactly."""
        optimiser = self.optimiser.state_dict()
        return {"params": self.params.copy(), "adam_m": optimiser["m"],
                "adam_v": optimiser["v"], "adam_t": optimiser["t"], "order": self.order.copy(),
                "position": np.int64(self.position), "step": np.int64(self.step),
                "rng": self.rng.bit_generator.state}

    def load_state_dict(self, state):
        params = np.asarray(state["params"])
        if params.shape != self.params.shape:
            raise InputError(f"the pre-training state holds {params.size} parameters, but "
                             f"{self.wide.name} has {self.params.size}; it belongs to another "
                             "network or other training classes")
        self.params = params.astype(self.params.dtype, copy=True)
        self.optimiser.load_state_dict({"m": state["adam_m"], "v": state["adam_v"],
                                        "t": state["adam_t"]})
        self.order = np.asarray(state["order"], np.int64).copy()
        self.position = int(state["position"])
        self.step = int(state["step"])
        self.rng.bit_generator.state = state["rng"]
