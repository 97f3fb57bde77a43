"""Ensembles at evaluation: several fine-tunings vote on each query.

A task is learned from one support set, so a single fine-tuning's prediction carries the
noise of its own path: the network it started from (one meta-training run among the
possible ones) and, with distorted support images (``eval_augmentation``), the distortions
it happened to draw. An :class:`Ensemble` fine-tunes every member network ``finetunings``
times on the same support set, averages the predicted class probabilities (the softmax of
each fine-tuned network's outputs) for each query, and predicts the most probable class.
With ``query_views`` V > 0, each fine-tuned network also classifies V distorted copies of
the queries (with the ``eval_augmentation`` ranges: test-time augmentation), and their
probabilities join the average; the queries themselves are always classified as they are.

Random streams: the task is drawn first from the task's stream, then every fine-tuning
draws its mini-batches (and distortions), then its query views, from the same stream in a
fixed order, member by member and repetition by repetition. A task's result therefore
depends only on its seed, not on where it runs, and an ensemble of one network fine-tuned
once gives exactly that network's own evaluation.
"""

import numpy as np

from ..errors import InputError, check_positive_int
from .fewshot import score_new_task


class Ensemble:
    """Member learners that fine-tune on the same task and vote by mean probability.

    Parameters
    ----------
    learners : sequence of FewShotLearner
        Their networks must have the same input and output shapes; each keeps its own
        parameters and inner-loop settings (learning rate, optimiser state).
    finetunings : int
        Fine-tunings of each member per task (≥ 1). Repetitions differ by the mini-batch
        order they draw and, with ``eval_augmentation``, by their distortions.
    query_views : int
        Distorted copies of the queries each fine-tuned network classifies besides the
        queries themselves (≥ 0; needs the members' ``eval_augmentation``).

    Examples
    --------
    Two networks, each fine-tuned twice on the support set of a 3-way task; one network
    fine-tuned once predicts as the learner itself:

    >>> from minireptile import (ClassSet, FewShotLearner, ImagePool, InnerConfig,
    ...                          omniglot_cnn, sample_eval_task)
    >>> rng = np.random.default_rng(0)
    >>> images = (rng.random((6, 4, 16, 16)) < 0.3).astype(np.uint8)
    >>> classes = ClassSet(ImagePool.from_classes([f"c{i}" for i in range(6)], list(images)))
    >>> model = omniglot_cnn(3, image_size=16, filters=8)
    >>> a, b = (FewShotLearner(model, model.init_params(rng), InnerConfig(iters=5))
    ...         for _ in range(2))
    >>> task = sample_eval_task(classes, 3, 1, rng)
    >>> p = Ensemble([a, b], finetunings=2).probabilities(task.support, task.query.images,
    ...                                                   3, 5, np.random.default_rng(1))
    >>> p.shape, bool(np.allclose(p.sum(axis=1), 1))
    ((3, 3), True)
    >>> (Ensemble([a]).evaluate(classes, 3, 1, 3, 5, np.random.default_rng(1))
    ...  == a.evaluate(classes, 3, 1, 3, 5, np.random.default_rng(1)))
    True
    """

    def __init__(self, learners, finetunings=1, query_views=0):
        learners = list(learners)
        if not learners:
            raise InputError("an ensemble needs at least one network")
        check_positive_int("finetunings", finetunings)
        if isinstance(query_views, bool) or not isinstance(query_views, (int, np.integer)) \
                or query_views < 0:
            raise InputError(f"query_views must be a whole number ≥ 0 (distorted copies of "
                             f"the queries), got {query_views!r}")
        if query_views and learners[0].eval_augmentation is None:
            raise InputError(f"query_views={query_views} needs distortion ranges for its "
                             "copies of the queries, and the members have no "
                             "eval_augmentation: add eval_augment=True")
        first = learners[0].model
        for i, learner in enumerate(learners[1:], start=1):
            model = learner.model
            if (model.input_shape, model.output_shape) != (first.input_shape,
                                                           first.output_shape):
                raise InputError(
                    f"ensemble member {i} maps {model.input_shape} to {model.output_shape} "
                    f"but member 0 maps {first.input_shape} to {first.output_shape}; the "
                    "members must be networks for the same images and number of classes")
            if learner.eval_augmentation != learners[0].eval_augmentation:
                raise InputError(
                    f"ensemble member {i} distorts support images with "
                    f"{learner.eval_augmentation} but member 0 with "
                    f"{learners[0].eval_augmentation}; an evaluation has one setting")
        self.learners = learners
        self.finetunings = int(finetunings)
        self.query_views = int(query_views)

    @property
    def model(self):
        """The first member's network (every member's has its input and output shapes)."""
        return self.learners[0].model

    @property
    def eval_augmentation(self):
        """The distortion of support images the members share (see the constructor)."""
        return self.learners[0].eval_augmentation

    def evaluate(self, classes, num_classes, num_shots, eval_batch, eval_iters, rng,
                 transductive=False):
        """Number of correctly classified queries (0..num_classes) on one new task, as
        :meth:`FewShotLearner.evaluate <minireptile.problems.fewshot.FewShotLearner.evaluate>`
        with the ensemble's vote."""
        return score_new_task(self, classes, num_classes, num_shots, eval_batch, eval_iters,
                              rng, transductive)

    def finetune_and_predict(self, support, query_images, eval_batch, eval_iters, rng,
                             transductive=False):
        """The most probable class of each query, shape (n_query,), int64 (ties: the lower
        class)."""
        return np.argmax(self.probabilities(support, query_images, eval_batch, eval_iters,
                                            rng, transductive), axis=1)

    def probabilities(self, support, query_images, eval_batch, eval_iters, rng,
                      transductive=False):
        """Mean over all fine-tunings (and query views) of the softmax of the fine-tuned
        outputs: :meth:`votes` averaged, summed in their order.

        Returns
        -------
        ndarray, shape (n_query, num_classes), rows summing to 1
        """
        votes = self.votes(support, query_images, eval_batch, eval_iters, rng, transductive)
        each = votes.reshape(-1, *votes.shape[-2:])
        return sum(each) / len(each)  # one vote after another, not numpy's pairwise order

    def votes(self, support, query_images, eval_batch, eval_iters, rng, transductive=False):
        """Every classification's probabilities: member by member, fine-tuning by
        fine-tuning, the queries and then each of their views.

        Returns
        -------
        ndarray, shape (members, finetunings, 1 + query_views, n_query, num_classes)

        Every member's Φ and optimiser state are left exactly as they were.
        """
        out = np.empty((len(self.learners), self.finetunings, 1 + self.query_views,
                        len(query_images), self.model.output_shape[0]))
        for m, learner in enumerate(self.learners):
            for k in range(self.finetunings):
                w = learner.finetune(support, eval_batch, eval_iters, rng)
                for view in range(1 + self.query_views):
                    images = (query_images if view == 0 else
                              learner.eval_augmentation.apply(query_images, rng))
                    out[m, k, view] = softmax(learner.query_logits(w, support.images, images,
                                                                   transductive))
        return out


def softmax(logits):
    """Row-wise softmax of ``logits`` (n, classes), in float64, stable for large outputs."""
    z = np.asarray(logits, dtype=np.float64)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)
