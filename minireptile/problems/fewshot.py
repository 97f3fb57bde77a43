"""Few-shot classification: the learner that meta-trains, fine-tunes and evaluates a network.

The semantics follow the reference implementation (openai/supervised-reptile, ``reptile.py``):

* **Inner loop.** ``inner_iters`` mini-batches of a task
  (:func:`minireptile.problems.tasks.mini_batches`), each preceded by weight decay
  ``w ← rate·w`` (a no-op for rate 1) and followed by one step of Adam (β1 = 0 by default)
  or SGD. The step follows the gradient of the *summed* cross-entropy
  over the mini-batch: the reference minimises TensorFlow's per-example loss vector, whose
  gradient TensorFlow takes of the sum. (Adam barely notices the scale; SGD's step is
  ``batch`` times that of the mean.)
* **Adam state.** Only the network's parameters are reset between tasks: the inner optimiser's
  moments and step count carry over from task to task and from one meta-iteration to the next,
  as TensorFlow's slot variables do in the reference. Evaluation saves the whole state, optimiser
  included, and restores it afterwards, so evaluating never changes training.
* **The meta-iteration.** Each task of a meta-batch runs its inner loop under the learner's
  algorithm (:mod:`minireptile.algorithms.directions`), which returns the direction the task
  asks of Φ: ``W − Φ`` for Reptile, the last step ``W_k − W_{k−1}`` for first-order MAML
  (whose ``tail_shots`` hold out that many examples per class for the last step), the last
  step carried back through the first ``k − 1`` with Hessian-vector products for
  second-order MAML (inner SGD without weight decay), ``−α Σ c_i g_i`` for a gradient
  combination. :func:`~minireptile.algorithms.meta_iteration.meta_step` averages the
  directions and moves Φ.
* **Evaluation.** Draw ``shots + 1`` examples per class, hold one per class out as the query,
  fine-tune on the support set for ``eval_iters`` mini-batches of ``eval_batch``, then predict.
  With an ``eval_augmentation`` every fine-tuning mini-batch is a freshly distorted copy of the
  support images it draws (one-shot fine-tuning then sees many versions of each example); the
  queries are never distorted.
  *Transductive*: all queries in one forward pass (batch norm sees the query batch).
  *Non-transductive*: one pass per query over the support set plus that query, keeping the
  last prediction (batch norm sees support statistics only).
"""

from dataclasses import dataclass

import numpy as np

from ..algorithms.directions import make_algorithm
from ..algorithms.meta_iteration import OuterSGD, meta_step
from ..algorithms.optim import SGD, Adam
from ..guard import check_finite
from ..parallel.executor import SerialExecutor, task_seeds
from ..stats import mean_and_interval
from .tasks import mini_batches, sample_eval_task, sample_task, split_support_query


@dataclass
class InnerConfig:
    """How a task is learned: optimiser, mini-batches and weight decay (the reference's
    defaults: Adam with β1 = 0 at 0.001, 20 steps of 5 examples, no replacement, no decay).

    Attributes
    ----------
    learning_rate : float
        Step size of Adam, or of SGD with ``sgd``.
    sgd : bool
    beta1 : float
        Adam's first-moment decay.
    batch, iters : int
        Mini-batch size and number of inner steps.
    replacement : bool
        Draw each mini-batch independently (with replacement between batches).
    weight_decay : float
        ``w ← weight_decay·w`` before every step (1: none).
    """

    learning_rate: float = 1e-3
    sgd: bool = False
    beta1: float = 0.0
    batch: int = 5
    iters: int = 20
    replacement: bool = False
    weight_decay: float = 1.0

    @property
    def plain_sgd(self):
        """True when every step is ``w ← w − lr·g``: SGD without weight decay, which is what
        second-order MAML differentiates and what makes gradient combinations add up."""
        return self.sgd and self.weight_decay == 1


def make_inner_optimizer(config):
    """Adam(β1 = ``config.beta1``) as the reference's default, or SGD with ``sgd=True``."""
    if config.sgd:
        return SGD(config.learning_rate)
    return Adam(config.learning_rate, beta1=config.beta1)


class FewShotLearner:
    """Meta-learning state and steps for a classification model.

    Parameters
    ----------
    model : Model
        Any model with loss ``cross_entropy`` over images.
    phi : ndarray, shape (model.size,)
        Meta-parameters, updated in place by :meth:`train_step`.
    inner : InnerConfig
    outer : OuterSGD or OuterAdam, optional
    algorithm : Reptile, FirstOrderMAML, MAML or GradientCombination, or its name
        What each task's inner loop contributes (:mod:`minireptile.algorithms.directions`);
        a name is passed to :func:`~minireptile.algorithms.directions.make_algorithm` with
        ``tail_shots`` and ``combination``.
    augmentation : AffineAugmentation, optional
        Distorts the images of every training task (never those of evaluation tasks).
    eval_augmentation : AffineAugmentation, optional
        Distorts the support images of every fine-tuning mini-batch at evaluation, afresh at
        each step (never the queries).

    Examples
    --------
    Six classes of four random 16×16 images, a small network for 3-way tasks, one
    meta-iteration and a (tiny) evaluation:

    >>> from minireptile import ClassSet, ImagePool, omniglot_cnn
    >>> rng = np.random.default_rng(0)
    >>> images = (rng.random((6, 4, 16, 16)) < 0.3).astype(np.uint8)
    >>> classes = ClassSet(ImagePool.from_classes([f"c{i}" for i in range(6)], list(images)))
    >>> model = omniglot_cnn(3, image_size=16, filters=8)
    >>> learner = FewShotLearner(model, model.init_params(rng),
    ...                          InnerConfig(learning_rate=0.003, iters=5), algorithm="reptile")
    >>> learner.algorithm
    Reptile()
    >>> loss = learner.train_step(classes, num_classes=3, num_shots=2, meta_batch=2,
    ...                           step_size=1.0, rng=rng)
    >>> mean, half_width, per_task = evaluate_accuracy(learner, classes, num_classes=3,
    ...                                                num_shots=1, eval_batch=3, eval_iters=5,
    ...                                                num_samples=4, rng=rng)
    >>> per_task.shape
    (4,)
    """

    def __init__(self, model, phi, inner, outer=None, algorithm="reptile", tail_shots=None,
                 combination=None, augmentation=None, eval_augmentation=None):
        self.algorithm = make_algorithm(algorithm, tail_shots, combination)
        self.algorithm.check_inner(inner.plain_sgd)
        self.model = model
        self.phi = phi
        self.inner = inner
        self.outer = outer or OuterSGD()
        self.augmentation = augmentation
        self.eval_augmentation = eval_augmentation
        self.optimizer = make_inner_optimizer(inner)
        self._grad = np.empty_like(phi)

    def __getstate__(self):
        # The gradient buffer is scratch space: a copy sent to a worker (each periodic
        # evaluation, each parallel meta-batch) need not carry it.
        state = self.__dict__.copy()
        del state["_grad"]
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._grad = np.empty_like(self.phi)

    # -- the inner loop ------------------------------------------------------------------
    def _step(self, w, batch):
        """One inner step on ``batch`` in place; returns the loss and the gradient followed
        (this learner's buffer, overwritten by the next step)."""
        if self.inner.weight_decay != 1:
            w *= w.dtype.type(self.inner.weight_decay)
        loss, grad = self.model.loss_and_grad(w, batch.images, batch.labels, out=self._grad)
        grad *= grad.dtype.type(len(batch.labels))  # mean → sum, as the reference
        self.optimizer.step(w, grad)
        return loss, grad

    def _train_batches(self, task, rng, iters, batch_size):
        """The mini-batches of one task's inner loop (with the FOMAML tail as the last)."""
        tail_shots = self.algorithm.tail_shots
        if tail_shots is not None:
            split = split_support_query(task, tail_shots)
            return [*mini_batches(split.support, batch_size, iters - 1, self.inner.replacement,
                                  rng), split.query]
        return list(mini_batches(task, batch_size, iters, self.inner.replacement, rng))

    def adapt(self, w, task, rng):
        """Run the inner loop on ``task`` from ``w`` (in place).

        Returns
        -------
        direction : ndarray, shape (size,)
            The move this task asks of Φ before the outer step size (see
            :mod:`minireptile.algorithms.directions`): ``W − W₀`` for Reptile.
        losses : list of float
            The mini-batch losses, each before its step.
        """
        batches = self._train_batches(task, rng, self.inner.iters, self.inner.batch)
        return self.algorithm.direction(_TaskSteps(self, batches), w)

    @property
    def tasks_independent(self):
        """True when nothing carries from one task's inner loop to the next (inner SGD), so
        the tasks of a meta-batch may run in parallel. Inner Adam's moments carry over, as
        the reference's do, which makes its tasks sequential."""
        return isinstance(self.optimizer, SGD)

    # -- one meta-iteration -------------------------------------------------------------
    def train_step(self, classes, num_classes, num_shots, meta_batch, step_size, rng,
                   executor=None):
        """Sample ``meta_batch`` tasks, adapt to each from Φ, and update Φ in place.

        Each task draws from its own stream (:func:`~minireptile.parallel.executor.task_seeds`), so
        the result is the same whether the tasks run here one after another or, when they
        are independent (:attr:`tasks_independent`), on the ``executor``'s workers.

        Returns the mean inner-loop loss.
        """
        seeds = task_seeds(rng, meta_batch)
        settings = (num_classes, num_shots)
        if executor is not None and executor.workers > 1 and meta_batch > 1 \
                and self.tasks_independent:
            results = executor.map(_adapt_task, seeds, self, executor.share(classes), settings)
        else:
            results = [_adapt_task(self, classes, settings, seed) for seed in seeds]
        meta_step(self.phi, [direction for direction, _ in results], step_size, self.outer)
        return float(np.mean([loss for _, task_losses in results for loss in task_losses]))

    # -- evaluation ---------------------------------------------------------------------
    def evaluate(self, classes, num_classes, num_shots, eval_batch, eval_iters, rng,
                 transductive=False):
        """Number of correctly classified queries (0..num_classes) on one new task.

        The optimiser state and Φ are left exactly as they were.
        """
        return score_new_task(self, classes, num_classes, num_shots, eval_batch, eval_iters,
                              rng, transductive)

    def finetune_and_predict(self, support, query_images, eval_batch, eval_iters, rng,
                             transductive=False):
        """Fine-tune a copy of Φ on ``support`` (:meth:`finetune`) and predict the labels of
        ``query_images`` (:meth:`predict_queries`), shape (n_query,), int64."""
        w = self.finetune(support, eval_batch, eval_iters, rng)
        return self.predict_queries(w, support.images, query_images, transductive)

    def finetune(self, support, eval_batch, eval_iters, rng):
        """A copy of Φ fine-tuned on ``support`` for ``eval_iters`` mini-batches of
        ``eval_batch``.

        Parameters
        ----------
        support : Task
            Images (n, *input_shape) and labels (n,).

        Returns
        -------
        ndarray, shape (size,)

        Φ and the optimiser state are left exactly as they were. With
        :attr:`eval_augmentation`, each mini-batch's images are distorted before its step.
        """
        saved = self.optimizer.state_dict()
        try:
            w = self.phi.copy()
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                for batch in mini_batches(support, eval_batch, eval_iters,
                                          self.inner.replacement, rng):
                    if self.eval_augmentation is not None:
                        batch = self.eval_augmentation.augment_task(batch, rng)
                    self._step(w, batch)
            # A diverged fine-tuning predicts one class for every query: chance accuracy
            # that would look like a result.
            check_finite({"fine-tuned weights": w},
                         f"fine-tuning diverged: lower learning_rate="
                         f"{self.inner.learning_rate} or eval_iters={eval_iters}")
            return w
        finally:
            self.optimizer.load_state_dict(saved)

    def predict_queries(self, w, support_images, query_images, transductive):
        """Predicted labels of the queries after fine-tuning, shape (n_query,): the arg-max
        of :meth:`query_logits`."""
        return np.argmax(self.query_logits(w, support_images, query_images, transductive),
                         axis=1)

    def query_logits(self, w, support_images, query_images, transductive):
        """The network's outputs for the queries after fine-tuning to ``w``, shape
        (n_query, num_classes): all queries in one pass when ``transductive``, else each
        query in a pass of its own after the support images (only its row kept).

        Raises :class:`~minireptile.guard.DivergedError` if an output is not finite (the
        arg-max of NaNs is class 0 for every query, which would pass for a prediction)."""
        if transductive:
            return self._logits(w, query_images)
        return np.stack([self._logits(w, np.concatenate([support_images, query[None]]))[-1]
                         for query in query_images])

    def _logits(self, w, images):
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            logits = self.model.predict(w, images)
        check_finite({"network outputs": logits},
                     f"the fine-tuned network overflows: lower learning_rate="
                     f"{self.inner.learning_rate}")
        return logits

    # -- state for checkpoints ----------------------------------------------------------
    def state_dict(self):
        """Arrays and numbers that, with Φ, resume training exactly."""
        state = {f"inner.{k}": v for k, v in self.optimizer.state_dict().items()}
        state.update({f"outer.{k}": v for k, v in self.outer.state_dict().items()})
        return state

    def load_state_dict(self, state):
        self.optimizer.load_state_dict(_strip(state, "inner."))
        self.outer.load_state_dict(_strip(state, "outer."))


class _TaskSteps:
    """One task's inner steps, as :mod:`minireptile.algorithms.directions` drives them: the
    learner's optimiser on the mini-batches drawn for the task, each step following the
    gradient of the summed loss."""

    def __init__(self, learner, batches):
        self.learner = learner
        self.batches = batches
        self.k = len(batches)
        self.lr = learner.inner.learning_rate
        self.model = learner.model
        self.plain_sgd = learner.inner.plain_sgd

    def run(self, w, start=0, stop=None):
        return [self.learner._step(w, batch)[0] for batch in self.batches[start:stop]]

    def step_with_gradient(self, w, i):
        loss, grad = self.learner._step(w, self.batches[i])
        return loss, grad.copy()

    def batch(self, i):
        return self.batches[i].images, self.batches[i].labels

    def scale(self, i):
        return len(self.batches[i].labels)


def _adapt_task(learner, classes, settings, seed):
    """One task of a meta-batch, drawn and learned from its own stream ``seed``:
    ``(update, losses)`` as :meth:`FewShotLearner.adapt` returns them."""
    num_classes, num_shots = settings
    rng = np.random.default_rng(seed)
    task = sample_task(classes, num_classes, num_shots, rng)
    if learner.augmentation is not None:
        # From the task's own stream, so the distortions do not depend on where it runs.
        task = learner.augmentation.augment_task(task, rng)
    return learner.adapt(learner.phi.copy(), task, rng)


def score_new_task(predictor, classes, num_classes, num_shots, eval_batch, eval_iters, rng,
                   transductive):
    """Draw an evaluation task from ``rng``, let ``predictor`` (a FewShotLearner or an
    Ensemble) fine-tune on its support set and classify its queries, and count the correct
    ones (0..num_classes)."""
    task = sample_eval_task(classes, num_classes, num_shots, rng)
    predictions = predictor.finetune_and_predict(task.support, task.query.images, eval_batch,
                                                 eval_iters, rng, transductive)
    return int(np.sum(predictions == task.query.labels))


def evaluate_task(learner, classes, settings, seed):
    """Correct queries of one new task drawn from its own stream ``seed``.

    ``settings`` is ``(num_classes, num_shots, eval_batch, eval_iters, transductive)``.
    """
    num_classes, num_shots, eval_batch, eval_iters, transductive = settings
    return learner.evaluate(classes, num_classes, num_shots, eval_batch, eval_iters,
                            np.random.default_rng(seed), transductive)


def evaluate_accuracy(learner, classes, num_classes, num_shots, eval_batch, eval_iters,
                      num_samples, rng, transductive=False, progress=False, executor=None):
    """Mean accuracy over ``num_samples`` new tasks, with the 95% interval's half-width.

    Task ``i`` draws from its own stream (seeds from ``rng``), so the tasks can run on the
    ``executor``'s workers (default: here, one after another) with the same result.

    Returns
    -------
    (mean, half_width, per_task) where per_task is an array of accuracies in [0, 1].

    Examples
    --------
    See :class:`FewShotLearner`.
    """
    executor = executor or SerialExecutor()
    seeds = task_seeds(rng, num_samples)
    settings = (num_classes, num_shots, eval_batch, eval_iters, transductive)
    results = executor.imap(evaluate_task, seeds, learner, executor.share(classes), settings)
    if progress:
        from tqdm import tqdm

        results = tqdm(results, total=num_samples, desc="evaluating", unit="task",
                       mininterval=0.5)
    per_task = np.array([correct / num_classes for correct in results], dtype=np.float64)
    mean, half = mean_and_interval(per_task)
    return mean, half, per_task


def _strip(state, prefix):
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
