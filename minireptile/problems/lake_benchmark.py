"""Lake et al.'s one-shot classification benchmark with a meta-learned network.

Each of the 20 runs is a 20-way, one-shot problem within one evaluation alphabet: fine-tune a
copy of Φ on the 20 training images (one per class, as Reptile evaluates: ``eval_iters``
mini-batches of ``eval_batch`` drawn from them with the reference's sampling), then classify
the 20 test images, transductively or one at a time. The error rate of a run is the fraction
of test images misclassified.
"""

import numpy as np

from ..errors import InputError
from ..parallel.executor import SerialExecutor, task_seeds
from ..stats import mean_and_interval
from .tasks import Task

# Published error rates on the 20 runs (Lake, Salakhutdinov & Tenenbaum 2015; Koch et al.
# 2015), for comparison tables.
PUBLISHED = (
    ("People", "4.5%", "", ""),
    ("Bayesian Program Learning", "3.3%", "4.3%", "4.0%"),
    ("Deep convolutional network", "13.5%", "24.0%", "22.3%"),
    ("Siamese convolutional network", "8.0%", "", ""),
)


def evaluate_runs(learner, runs, eval_batch, eval_iters, rng, transductive, executor=None):
    """Error rate of each run.

    Parameters
    ----------
    learner : FewShotLearner
        Its network must have as many outputs as a run has classes (20).
    runs : list of LakeRun
    rng : numpy.random.Generator
        Draws one seed per run, whose stream draws that run's fine-tuning mini-batches.
    executor : SerialExecutor or ProcessExecutor, optional
        Where the runs are evaluated (default: here, in order); the result does not depend
        on it.

    Returns
    -------
    list of (run name, error rate in [0, 1])
    """
    outputs = learner.model.output_shape[0]
    for run in runs:
        classes = len(run.train_labels)
        if outputs != classes:
            raise InputError(
                f"run {run.name} is {classes}-way but the network has {outputs} outputs; "
                f"evaluate a network trained with classes={classes}"
            )
    executor = executor or SerialExecutor()
    settings = (eval_batch, eval_iters, transductive)
    errors = executor.map(_run_error, list(zip(runs, task_seeds(rng, len(runs)))), learner,
                          settings)
    return [(run.name, error) for run, error in zip(runs, errors)]


def _run_error(learner, settings, run_and_seed):
    """Error rate of one run, fine-tuned with the stream of its own seed."""
    run, seed = run_and_seed
    eval_batch, eval_iters, transductive = settings
    predicted = learner.finetune_and_predict(Task(run.train_images, run.train_labels),
                                             run.test_images, eval_batch, eval_iters,
                                             np.random.default_rng(seed), transductive)
    return float(np.mean(predicted != run.test_labels))


def summary(results):
    """Mean error rate over runs and its 95% interval half-width."""
    return mean_and_interval([error for _, error in results])
