"""Snapshots: a run keeps a copy of itself as it stood after ``snapshot_at`` iterations, a run
folder of its own that resumes exactly as the run went on."""

import json

import numpy as np
import pytest
from conftest import tiny_train_args

from minireptile.cli import main
from minireptile.data import ClassSet, ImagePool
from minireptile.errors import InputError
from minireptile.models.cnn import omniglot_cnn
from minireptile.npzfile import load_npz
from minireptile.runs.config import TrainConfig
from minireptile.runs.run import Run
from minireptile.runs.training import train

# Checkpoints every 5 iterations, so the snapshot after 3 is written for itself.
OPTIONS = {"classes": 3, "shots": 1, "inner_iters": 1, "meta_iters": 7, "eval_interval": 2,
           "checkpoint_interval": 5, "snapshot_at": 3}


def random_splits(seed=0, side=16):
    rng = np.random.default_rng(seed)
    images = (rng.random((8, 3, side, side)) < 0.3).astype(np.uint8)
    pool = ImagePool.from_classes([f"c{i}" for i in range(8)], list(images))
    return ClassSet(pool, base=range(5)), ClassSet(pool, base=range(5, 8))


def run_training(folder, resume=False, **changes):
    train_classes, test_classes = random_splits()
    return train(omniglot_cnn(3, image_size=16, filters=4), train_classes, test_classes,
                 TrainConfig(**{**OPTIONS, **changes}), folder, resume=resume, progress=False,
                 log=lambda line: None)


def metric_iterations(folder):
    with open(Run(folder).metrics_path) as f:
        return [json.loads(line)["iteration"] for line in f]


def test_the_snapshot_is_the_run_as_it_stood_and_resumes_into_the_same_run(tmp_path):
    whole = run_training(tmp_path / "run")
    snapshot = Run(tmp_path / "run").snapshot(3)
    arrays, meta = load_npz(snapshot.checkpoint_path)
    assert meta["next_iteration"] == 3
    assert not np.array_equal(arrays["phi"], whole.phi)
    # Its metrics are the run's own up to the snapshot: evaluations at iterations 0 and 2.
    assert metric_iterations(snapshot.directory) == [0, 2]
    assert metric_iterations(tmp_path / "run") == [0, 2, 4, 6]
    # Resumed, it finishes as the run did, bit for bit.
    resumed = run_training(snapshot.directory, resume=True)
    np.testing.assert_array_equal(resumed.phi, whole.phi)
    assert not snapshot.snapshot(3).exists()
    # Without snapshot_at there is no snapshot, and the same training.
    plain = run_training(tmp_path / "plain", snapshot_at=0)
    np.testing.assert_array_equal(plain.phi, whole.phi)
    assert not Run(tmp_path / "plain").snapshot(3).exists()


def test_a_run_stopped_after_the_snapshot_writes_it_again_on_resume(tmp_path, monkeypatch):
    folder = str(tmp_path / "run")
    save = Run.save

    def stop_at_the_run_checkpoint_after_3(self, model, learner, rngs, done, *rest):
        if self.directory == folder and done == 3:
            raise KeyboardInterrupt
        save(self, model, learner, rngs, done, *rest)

    with monkeypatch.context() as patched:
        patched.setattr(Run, "save", stop_at_the_run_checkpoint_after_3)
        with pytest.raises(KeyboardInterrupt):
            run_training(folder, checkpoint_interval=2)
    # The snapshot was written first; the run's checkpoint is the one after 2 iterations.
    snapshot = Run(folder).snapshot(3)
    first = load_npz(snapshot.checkpoint_path)[0]["phi"]
    assert load_npz(Run(folder).checkpoint_path)[1]["next_iteration"] == 2
    finished = run_training(folder, resume=True, checkpoint_interval=2)
    np.testing.assert_array_equal(load_npz(snapshot.checkpoint_path)[0]["phi"], first)
    assert metric_iterations(snapshot.directory) == [0, 2]
    resumed = run_training(snapshot.directory, resume=True, checkpoint_interval=2)
    np.testing.assert_array_equal(resumed.phi, finished.phi)
    np.testing.assert_array_equal(resumed.phi, run_training(tmp_path / "whole").phi)
    assert not snapshot.snapshot(3).exists()


@pytest.mark.parametrize("snapshot_at", [7, 8])
def test_a_snapshot_at_or_after_the_last_iteration_is_refused(tmp_path, snapshot_at):
    with pytest.raises(InputError, match=f"snapshot_at={snapshot_at}: expected an iteration "
                                         "before the last, below meta_iters=7"):
        run_training(tmp_path / "run", snapshot_at=snapshot_at)


def test_the_command_line_keeps_a_snapshot_that_eval_opens(synthetic_omniglot, tmp_path,
                                                          capsys):
    run = tmp_path / "run"
    assert main(tiny_train_args(synthetic_omniglot, run, "--meta-iters", "3",
                                "--snapshot-at", "1")) == 0
    assert load_npz(run / "snapshot-1" / "checkpoint.npz")[1]["next_iteration"] == 1
    capsys.readouterr()
    assert main(["eval", "omniglot", "--checkpoint", str(run / "snapshot-1"),
                 "--eval-samples", "2", "--no-progress", "--workers", "1",
                 "--cache-dir", str(run) + "-cache"]) == 0
    out = capsys.readouterr().out
    assert "checkpoint after 1 of its 3 meta-iterations" in out and "Test accuracy" in out
    assert main(["eval", "omniglot", "--checkpoint", str(run), "--ensemble",
                 str(run / "snapshot-1"), "--eval-samples", "2", "--no-progress",
                 "--workers", "1", "--cache-dir", str(run) + "-cache"]) == 0
    out = capsys.readouterr().out
    assert f"ensemble member {str(run / 'snapshot-1')!r}: checkpoint after 1 of its 3" in out
    assert "checkpoint after 3" not in out
    code = main(tiny_train_args(synthetic_omniglot, tmp_path / "late", "--snapshot-at", "2"))
    assert code == 2
    assert "--snapshot-at 2: expected an iteration before the last" in capsys.readouterr().err
