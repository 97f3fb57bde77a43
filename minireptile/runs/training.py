"""Meta-training: the iterations of a run, its periodic evaluation and exact resume.

The run's folder, checkpoints and metrics are :mod:`minireptile.runs.run`'s; this module is
the loop that fills them. Killing the process at any moment loses at most the iterations
since the last checkpoint, and a resumed run ends with the parameters an uninterrupted one
has, bit for bit.
"""

import os
import time
from collections import deque

import numpy as np

from ..algorithms.meta_iteration import linear_schedule
from ..errors import InputError
from ..guard import DivergedError, check_finite
from ..parallel.executor import SerialExecutor, task_seeds
from ..problems.fewshot import evaluate_task
from .config import make_learner
from .run import Run, check_resumable, generators
from .runlock import RunLock


def _divergence_cause(config):
    """The likely cause of a divergence during training, and what to change."""
    return (f"the step sizes are probably too large: lower learning_rate="
            f"{config.learning_rate} or meta_step={config.meta_step} (final "
            f"meta_step_final={config.meta_step_final})")


def train(model, train_classes, test_classes, config, directory, resume=False, progress=True,
          log=print, data=None, executor=None):
    """Meta-train ``model`` on ``train_classes``; evaluate on both splits every
    ``eval_interval`` iterations (as the reference: one task each, accuracy = correct / N).

    Parameters
    ----------
    train_classes, test_classes : ClassSet
        With ``config.within_alphabet`` every task draws its classes from one alphabet (see
        :mod:`minireptile.data.alphabets`); with ``config.mirror_classes`` the training
        classes' mirror images are added (see :meth:`TrainConfig.training_classes`).
    data : dict, optional
        JSON-able description of the data (content hash, split options, sources), stored in
        the checkpoint; on ``resume`` everything but the paths must be the same.
    executor : SerialExecutor or ProcessExecutor, optional
        Where independent work runs (default: here). With more than one worker, the
        evaluations run on a worker while training goes on, and the tasks of a meta-batch run
        in parallel when they are independent (inner SGD); the results are the same bit for
        bit either way.

    Resuming with a larger ``config.meta_iters`` than the checkpoint's continues the run to
    the new total. The meta-step schedule is a function of the iteration and the total, so it
    is defined over the new total from the resumed iteration on: with a constant meta-step
    (the Omniglot default) the result is bit-identical to a run trained to the new total from
    the start; with an annealed one, the iterations already done keep the steps they had and
    the rest follow the new, longer schedule (it cannot be both, and re-annealing from the
    value reached would silently change what ``meta_step_final`` means).

    With ``config.snapshot_at`` = N the run is also kept as it stood after N iterations, in
    ``directory/snapshot-N`` (:meth:`~minireptile.runs.run.Run.save_snapshot`).

    Divergence: after every meta-iteration the inner loss, Φ and the optimiser states are
    checked, and every evaluation's fine-tuned weights and outputs; the first non-finite
    value raises :class:`~minireptile.guard.DivergedError` naming the iteration, before
    anything is logged or saved, so the last checkpoint on disk is the last good one.

    Returns the :class:`FewShotLearner` (its ``phi`` holds the trained parameters).

    Examples
    --------
    Four meta-iterations of a small network on random images, in a temporary run folder:

    >>> import tempfile
    >>> from minireptile import ClassSet, ImagePool, TrainConfig, omniglot_cnn
    >>> rng = np.random.default_rng(0)
    >>> images = (rng.random((8, 4, 16, 16)) < 0.3).astype(np.uint8)   # 8 classes of 4
    >>> pool = ImagePool.from_classes([f"c{i}" for i in range(8)], list(images))
    >>> train_classes = ClassSet(pool, base=range(5))     # meta-train on 5 classes,
    >>> test_classes = ClassSet(pool, base=range(5, 8))   # hold 3 out
    >>> config = TrainConfig(classes=3, shots=1, inner_iters=2, meta_iters=4, eval_interval=2,
    ...                      checkpoint_interval=2)
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     learner = train(omniglot_cnn(3, image_size=16, filters=8), train_classes,
    ...                     test_classes, config, folder, progress=False)
    ...     sorted(os.listdir(folder))
    ['.lock', 'checkpoint.npz', 'metrics.jsonl']
    >>> learner.phi.shape
    (1923,)
    """
    config.validate(train_classes, test_classes)
    train_classes = config.training_classes(train_classes)
    if config.within_alphabet:
        from ..data.alphabets import as_within_alphabet

        train_classes = as_within_alphabet(train_classes, config.classes, "training", log)
        test_classes = as_within_alphabet(test_classes, config.classes, "test", log)
    run = Run(directory)
    if os.path.exists(run.directory) and not os.path.isdir(run.directory):
        raise InputError(f"directory={run.directory!r} is a file; give a folder for the run "
                         "(created if missing)")
    if resume and not run.resumable():
        raise InputError(f"{run.nothing_to_resume()}; drop resume=True to start a new run")
    with RunLock(run.directory):
        return _train_locked(model, train_classes, test_classes, config, run, resume,
                             progress, log, data, executor)


# Pre-training steps between two saves of its state (about 16 s of the Omniglot network's).
PRETRAINING_SAVE_STEPS = 1000


def _pretrain(model, train_classes, config, run, resume, progress, log, data):
    """Run (or, with ``resume``, finish) the supervised pre-training ``config`` asks for,
    saving its state every :data:`PRETRAINING_SAVE_STEPS` steps; return the trained body,
    shape ``(model.body_size,)``."""
    stage = config.pretraining(model, train_classes)
    if resume and os.path.exists(run.pretraining_path):
        saved_config, meta = run.load_pretraining(stage)
        check_resumable(config, saved_config, 0, data, meta["extra"].get("data"))
        log(f"resuming the pre-training in {run.directory} at step {stage.step} of "
            f"{config.pretrain_steps}")
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=config.pretrain_steps, initial=stage.step, desc="pre-training",
                   unit="step", mininterval=0.5)
    recent = deque(maxlen=PRETRAINING_SAVE_STEPS)  # the latest losses, for the summary
    cause = f"lower pretrain_learning_rate={config.pretrain_learning_rate}"

    def on_step(stage, loss):
        if not np.isfinite(loss):
            raise DivergedError(f"pre-training diverged at step {stage.step}: the loss is "
                                f"{loss}; {cause}")
        recent.append(loss)
        if stage.step % PRETRAINING_SAVE_STEPS == 0 or stage.step == config.pretrain_steps:
            check_finite({"pre-trained parameters": stage.params}, cause)
            run.save_pretraining(stage, config, {"data": data})
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.3f}", refresh=False)

    try:
        stage.run(config.pretrain_steps - stage.step, on_step)
    finally:
        if bar is not None:
            bar.close()
    log(f"pre-trained on {len(train_classes)} classes for {config.pretrain_steps} steps"
        + (f" (mean loss over the last {len(recent)}: {np.mean(recent):.3f})" if recent else ""))
    return stage.body()


def _train_locked(model, train_classes, test_classes, config, run, resume, progress, log,
                  data, executor):
    """:func:`train`'s work, once the run folder is locked."""
    train_rng, eval_rng, _ = generators(config.seed)
    if resume and run.exists():
        phi, state, rng_states, start, saved_config, meta = run.load(model)
        check_resumable(config, saved_config, start, data, meta["extra"].get("data"))
        progress_state = meta["extra"].get("progress", {})
        learner = make_learner(model, phi.copy(), config)
        learner.load_state_dict(state)
        train_rng.bit_generator.state = rng_states[0]
        eval_rng.bit_generator.state = rng_states[1]
        run.truncate_metrics(start)
        if config.meta_iters > saved_config.meta_iters:
            log(f"extending {run.directory} from {saved_config.meta_iters} to "
                f"{config.meta_iters} iterations; resuming at iteration {start}")
        else:
            log(f"resuming {run.directory} at iteration {start} of {config.meta_iters}")
    else:
        if run.exists():
            raise InputError(f"{run.checkpoint_path!r} already holds a run; pass resume=True "
                             "to continue it, or choose another directory")
        if not resume and os.path.exists(run.pretraining_path):
            raise InputError(f"{run.pretraining_path!r} holds the pre-training of an unfinished "
                             "run; pass resume=True to continue it, or choose another "
                             "directory")
        if os.path.exists(run.metrics_path):
            os.remove(run.metrics_path)  # left by a run that never reached its first checkpoint
        phi = model.init_params(train_rng)
        # (A pre-training left by the stopped run is read even if pretrain_steps is now 0,
        # so that the changed setting is refused.)
        if config.pretrain_steps or (resume and os.path.exists(run.pretraining_path)):
            phi[:model.body_size] = _pretrain(model, train_classes, config, run, resume,
                                              progress, log, data)
        learner = make_learner(model, phi, config)
        start = 0
        progress_state = {}
    rngs = (train_rng, eval_rng)
    saved_at = start if resume else None

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=config.meta_iters, initial=start, desc="meta-training", unit="it",
                   mininterval=0.5)
    # Carried through checkpoints so a resumed run logs exactly what an uninterrupted one does
    # (only the wall-clock seconds differ).
    recent_loss = list(progress_state.get("recent_loss", []))
    started = time.perf_counter() - progress_state.get("seconds", 0.0)
    executor = executor or SerialExecutor()
    shared_splits = (executor.share(train_classes), executor.share(test_classes))
    eval_settings = (config.classes, config.shots, config.eval_batch, config.eval_iters,
                     config.transductive)
    pending = []  # evaluations submitted and not yet logged, oldest first
    cause = _divergence_cause(config)

    def diverged(iteration, err):
        kept = (f"the last good checkpoint, after {saved_at} of {config.meta_iters} "
                f"iterations, is kept in {run.checkpoint_path}"
                if saved_at is not None else "no checkpoint had been written yet")
        # Fine-tuning for the periodic evaluation may be the first to overflow when it is Φ
        # that grew: name the training step sizes too.
        also = "" if "meta_step=" in str(err) else f" (or, in training, {cause})"
        return DivergedError(f"meta-training diverged at iteration {iteration}: {err}{also}; "
                             f"{kept}")

    def log_pending():
        while pending:
            record, evaluations = pending.pop(0)
            try:
                accuracies = [correct / config.classes
                              for e in evaluations for correct in e.result()]
            except DivergedError as err:
                raise diverged(record["iteration"], err) from None
            record.update(train_accuracy=accuracies[0], test_accuracy=accuracies[1])
            run.log_metrics(record)
            if bar is not None:
                bar.set_postfix(train=f"{accuracies[0]:.2f}", test=f"{accuracies[1]:.2f}",
                                loss=f"{record['inner_loss']:.3f}", refresh=False)

    try:
        for iteration in range(start, config.meta_iters):
            step = linear_schedule(config.meta_step, config.meta_step_final, iteration,
                                   config.meta_iters)
            try:
                # Overflow warnings would only repeat, in several lines, what the check says.
                with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                    loss = learner.train_step(train_classes, config.classes,
                                              config.effective_train_shots, config.meta_batch,
                                              step, train_rng, executor)
                check_finite({"inner loss": loss, "parameters": learner.phi,
                              **{f"optimiser state {k}": v
                                 for k, v in learner.state_dict().items()}}, cause)
            except DivergedError as err:
                raise diverged(iteration, err) from None
            recent_loss.append(loss)
            if iteration % config.eval_interval == 0:
                log_pending()
                # One task per split, from streams drawn here in a fixed order. The executor
                # takes its copy of the learner now, so Φ may move on while a worker evaluates.
                seeds = task_seeds(eval_rng, 2)
                evaluations = [executor.submit(evaluate_task, [seed], learner, split,
                                               eval_settings)
                               for split, seed in zip(shared_splits, seeds)]
                record = {"iteration": iteration, "train_accuracy": None,
                          "test_accuracy": None, "inner_loss": float(np.mean(recent_loss)),
                          "meta_step": step,
                          "seconds": round(time.perf_counter() - started, 3)}
                pending.append((record, evaluations))
                recent_loss = []
            done = iteration + 1
            if (done % config.checkpoint_interval == 0 or done == config.meta_iters
                    or done == config.snapshot_at):
                log_pending()  # the metrics file covers every iteration the checkpoint does
                extra = {"data": data, "progress": {
                    "recent_loss": recent_loss, "seconds": time.perf_counter() - started}}
                if done == config.snapshot_at:
                    # Before the run's own checkpoint: a run stopped in between comes back
                    # here on resume and writes the snapshot again.
                    run.save_snapshot(model, learner, rngs, done, config, extra)
                run.save(model, learner, rngs, done, config, extra)
                saved_at = done
            if bar is not None:
                bar.update(1)
        log_pending()
    finally:
        if bar is not None:
            bar.close()
    if start >= config.meta_iters:
        log(f"{run.directory} has already finished its {config.meta_iters} iterations")
    return learner
