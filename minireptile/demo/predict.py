"""One-shot prediction for the demo: fine-tune a copy of Φ on the class drawings, classify one.

As in the Reptile article's demo (openai/supervised-reptile, ``web/src/webworker.js``), with
the run's own inner settings instead of the demo's fixed five steps:

* Fine-tuning starts from a copy of the meta-learned Φ and the inner optimiser's state stored
  with it (Adam's moments carry over from meta-training into evaluation, as in
  :meth:`minireptile.problems.fewshot.FewShotLearner.evaluate`), and runs the run's ``eval_iters``
  mini-batches of ``eval_batch`` drawings, capped at the number of drawings so that no step
  counts a drawing twice, with its learning rate, optimiser and weight decay.
* Prediction is transductive over the class drawings and the input together (one batch, so
  batch norm sees all of them); the input's row of the output gives the probabilities.
* The network has the run's number of outputs (5 for the built-in model); with N < 5 classes
  the labels are 0..N−1 and the probabilities are the softmax of the first N outputs.
* The comparison starts from a random initialisation (the network's own initialiser) with a
  fresh optimiser, and fine-tunes it the same way.

Every request works on its own copy of the parameters, its own optimiser and a model instance
taken from a pool (layers keep work arrays between calls), so concurrent requests are safe.
Mini-batch order and the random initialisation come from a fixed seed: the same drawings
always give the same answer.
"""

import queue
import time
from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from ..problems.fewshot import FewShotLearner, InnerConfig
from ..problems.tasks import Task

MAX_CLASSES = 5
MAX_SHOTS = 5
SEED = 0


@dataclass(frozen=True)
class FineTuning:
    """The inner settings a prediction fine-tunes with (a run's evaluation settings)."""

    learning_rate: float
    iters: int
    batch: int
    sgd: bool = False
    replacement: bool = False
    weight_decay: float = 1.0

    def inner(self, num_images):
        return InnerConfig(learning_rate=self.learning_rate, sgd=self.sgd,
                           batch=min(self.batch, num_images), iters=self.iters,
                           replacement=self.replacement, weight_decay=self.weight_decay)


class Predictor:
    """A meta-learned network ready to answer demo requests.

    Parameters
    ----------
    make_model : callable
        ``make_model()`` builds a fresh instance of the network (one per concurrent request).
    phi : ndarray, shape (size,)
        Meta-learned parameters (never modified).
    optimizer_state : dict
        The inner optimiser's state to start fine-tuning from (``{}``: fresh).
    fine_tuning : FineTuning
    description : dict
        JSON-able facts about the model, reported by ``GET /api/health``.
    """

    def __init__(self, make_model, phi, optimizer_state, fine_tuning, description):
        self._make_model = make_model
        self._models = queue.LifoQueue()
        model = make_model()
        self.num_outputs = int(model.output_shape[0])
        if self.num_outputs < 2:
            raise InputError(f"the network has {self.num_outputs} output; the demo needs "
                             "at least 2")
        self._models.put(model)
        self.phi = np.array(phi, dtype=model.dtype)
        self.phi.setflags(write=False)
        self.optimizer_state = {k: np.array(v) for k, v in optimizer_state.items()}
        self.fine_tuning = fine_tuning
        self.description = dict(description)
        self.max_classes = min(MAX_CLASSES, self.num_outputs)

    def _borrow(self):
        try:
            return self._models.get_nowait()
        except queue.Empty:
            return self._make_model()

    def predict(self, class_images, input_image, compare_random=True):
        """Probabilities that ``input_image`` belongs to each class.

        Parameters
        ----------
        class_images : list of (k_i, 28, 28) float32 arrays
            The drawings of each class (2 ≤ N ≤ ``max_classes`` classes, 1 ≤ k_i ≤ 5).
        input_image : (28, 28) float32 array
        compare_random : bool
            Also fine-tune from a random initialisation.

        Returns
        -------
        dict with ``probabilities`` (list of N floats), ``predicted`` (int) and ``losses``
        (fine-tuning mini-batch losses), and ``random_init`` (the same for the random start)
        when ``compare_random``; ``seconds`` is the time spent and ``cpu_seconds`` the
        processor time of the calling thread.
        """
        started, started_cpu = time.perf_counter(), time.thread_time()
        num_classes = len(class_images)
        if not 2 <= num_classes <= self.max_classes:
            raise InputError(f"{num_classes} classes given; between 2 and {self.max_classes} "
                             "are accepted")
        for c, images in enumerate(class_images):
            if not 1 <= len(images) <= MAX_SHOTS:
                raise InputError(f"class {c} has {len(images)} drawings; between 1 and "
                                 f"{MAX_SHOTS} are accepted")
        images = np.concatenate([np.asarray(x, dtype=np.float32) for x in class_images])
        labels = np.repeat(np.arange(num_classes), [len(x) for x in class_images])
        support = Task(images, labels.astype(np.int64))
        query = np.asarray(input_image, dtype=np.float32)[None]
        model = self._borrow()
        try:
            result = self._finetune_and_classify(model, self.phi, self.optimizer_state,
                                                 support, query, num_classes)
            if compare_random:
                rng = np.random.default_rng(SEED)
                random_phi = model.init_params(rng)
                result["random_init"] = self._finetune_and_classify(
                    model, random_phi, {}, support, query, num_classes)
        finally:
            self._models.put(model)
        result["seconds"] = time.perf_counter() - started
        # The processor time of this thread alone: what the answer costs on an idle machine.
        result["cpu_seconds"] = time.thread_time() - started_cpu
        return result

    def _finetune_and_classify(self, model, phi, optimizer_state, support, query, num_classes):
        learner = FewShotLearner(model, phi.copy(), self.fine_tuning.inner(len(support.labels)))
        if optimizer_state:
            learner.optimizer.load_state_dict(optimizer_state)
        w = learner.phi
        _, losses = learner.adapt(w, support, np.random.default_rng(SEED))
        logits = model.predict(w, np.concatenate([support.images, query]))[-1, :num_classes]
        logits = logits.astype(np.float64)
        probabilities = np.exp(logits - logits.max())
        probabilities /= probabilities.sum()
        return {"probabilities": probabilities.tolist(),
                "predicted": int(np.argmax(probabilities)),
                "losses": [float(v) for v in losses]}
