"""Faults that must never end in a silent wrong answer: divergence, non-finite flags, runs
that forget their data, resumes that extend a run, failed commands leaving folders behind."""

import argparse
import errno
import json
import os
import re
import shutil
import stat

import numpy as np
import pytest
from test_training import small_config, tiny_model, vector_classes

from minireptile.cli import build_parser, main
from minireptile.errors import InputError
from minireptile.guard import EXIT_DIVERGED, DivergedError
from minireptile.npzfile import load_npz, save_npz_atomic
from minireptile.problems.fewshot import FewShotLearner, InnerConfig
from minireptile.runs.config import TrainConfig
from minireptile.runs.training import train

QUIET = dict(progress=False, log=lambda *_: None)


def train_args(data, checkpoint, *extra):
    return ["train", "omniglot", "--data", str(data), "--num-train", "8", "--classes", "3",
            "--shots", "1", "--train-shots", "2", "--inner-batch", "4", "--inner-iters", "1",
            "--meta-iters", "2", "--eval-iters", "1", "--eval-samples", "0",
            "--checkpoint", str(checkpoint), "--no-progress", *extra]


def one_line_error(capsys):
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    return err


# -- divergence -----------------------------------------------------------------------------

def test_divergence_stops_with_status_3_and_keeps_the_last_good_checkpoint(tmp_path,
                                                                          monkeypatch):
    model = tiny_model()
    classes = vector_classes()
    run = tmp_path / "run"
    train(model, classes, classes, small_config(meta_iters=4), run, **QUIET)
    good = (run / "checkpoint.npz").read_bytes()
    honest = FewShotLearner.train_step
    calls = []

    def poisoned(self, *args):
        loss = honest(self, *args)
        calls.append(1)
        if len(calls) == 2:  # the resumed run's iteration 5
            self.phi[3] = np.inf
        return loss

    monkeypatch.setattr(FewShotLearner, "train_step", poisoned)
    with pytest.raises(DivergedError) as err:
        train(model, classes, classes, small_config(meta_iters=10), run, resume=True, **QUIET)
    message = str(err.value)
    assert "diverged at iteration 5" in message and "parameters" in message
    assert "last good checkpoint, after 4 of 10 iterations" in message
    assert "learning_rate=" in message
    assert (run / "checkpoint.npz").read_bytes() == good
    for line in (run / "metrics.jsonl").read_text().splitlines():
        json.loads(line, parse_constant=lambda c: pytest.fail(f"{c} in metrics.jsonl"))


def test_command_line_divergence_exits_3_in_one_line(tmp_path, synthetic_omniglot, capsys):
    run = tmp_path / "run"
    code = main(train_args(synthetic_omniglot, run, "--sgd", "--learning-rate", "1e30",
                           "--meta-iters", "5"))
    assert code == EXIT_DIVERGED == 3
    err = one_line_error(capsys)
    # (iteration 0's evaluation may still be pending on a worker when iteration 1 diverges)
    assert re.search(r"diverged at iteration [01]: ", err), err
    assert "no checkpoint had been written" in err
    assert not (run / "checkpoint.npz").exists()


def test_diverging_fine_tuning_is_not_scored(tmp_path):
    model = tiny_model()
    classes = vector_classes()
    learner = FewShotLearner(model, model.init_params(np.random.default_rng(0)),
                             InnerConfig(learning_rate=1e300, sgd=True, batch=3, iters=2))
    with pytest.raises(DivergedError, match="fine-tuned weights.*learning_rate="):
        learner.evaluate(classes, 3, 2, 3, 5, np.random.default_rng(0))


def test_checkpoint_holding_nan_is_refused_by_eval(tmp_path, synthetic_omniglot, capsys):
    run = tmp_path / "run"
    assert main(train_args(synthetic_omniglot, run)) == 0
    arrays, meta = load_npz(run / "checkpoint.npz")
    arrays["phi"][0] = np.nan
    save_npz_atomic(run / "checkpoint.npz", arrays, meta)
    capsys.readouterr()
    assert main(["eval", "omniglot", "--checkpoint", str(run), "--eval-samples", "2",
                 "--no-progress"]) == 3
    assert "non-finite values in parameters" in one_line_error(capsys)


def test_sine_divergence_exits_3(capsys):
    code = main(["sine", "--iterations", "50", "--inner-lr", "1e20", "--eval-tasks", "0",
                 "--no-progress"])
    assert code == 3
    assert "sine meta-training diverged at iteration" in one_line_error(capsys)


def _numeric_flags():
    """(command words, flag) for every flag parsed as a real number, on every command."""
    found = []

    def walk(parser, words):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, words + [name])
            elif action.type is float:
                found.append((words, action.option_strings[0], "bare float"))
            elif getattr(action.type, "kind", None) is not None \
                    and action.type.kind.type == "float":
                found.append((words, action.option_strings[0], None))

    walk(build_parser(), [])
    return found


def test_every_numeric_flag_refuses_nan_and_infinities(capsys):
    flags = _numeric_flags()
    assert len(flags) >= 8 and not [f for f in flags if f[2]], flags
    for words, flag, _ in flags:
        for bad in ("nan", "inf", "-inf", "NaN", "1e400"):
            with pytest.raises(SystemExit) as stop:
                build_parser().parse_args(words + [f"{flag}={bad}"])
            assert stop.value.code == 2
            err = one_line_error(capsys)
            assert flag in err and "finite" in err, err


def test_library_configuration_refuses_non_finite_values():
    with pytest.raises(InputError, match=r"meta_step_final=inf: expected a number >= 0"):
        TrainConfig(meta_step_final=float("inf")).validate()


# -- a run remembers its data ---------------------------------------------------------------

@pytest.fixture
def trained(tmp_path, synthetic_omniglot):
    run = tmp_path / "run"
    assert main(train_args(synthetic_omniglot, run)) == 0
    return run


def test_eval_reuses_the_run_data_and_split(trained, capsys):
    capsys.readouterr()
    assert main(["eval", "omniglot", "--checkpoint", str(trained), "--eval-samples", "3",
                 "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "data: the run's images; the run's split" in out
    assert "Test accuracy" in out


def test_eval_on_an_overlapping_split_is_refused_unless_allowed(trained, synthetic_omniglot,
                                                                capsys):
    capsys.readouterr()
    argv = ["eval", "omniglot", "--checkpoint", str(trained), "--num-train", "4",
            "--eval-samples", "3", "--no-progress", "--split", "test"]
    assert main(argv) == 2
    err = one_line_error(capsys)
    assert "classes the run trained on" in err and "--allow-train-overlap" in err
    assert main(argv + ["--allow-train-overlap"]) == 0
    out = capsys.readouterr().out
    assert "split changed: --num-train 4 (run: 8)" in out
    assert "NOT a held-out accuracy" in out


def test_eval_of_a_run_trained_with_a_smaller_split_needs_no_repetition(
        tmp_path, synthetic_omniglot, capsys):
    run = tmp_path / "run"
    assert main(train_args(synthetic_omniglot, run, "--num-train", "5")) == 0
    capsys.readouterr()
    assert main(["eval", "omniglot", "--checkpoint", str(run), "--data", str(synthetic_omniglot),
                 "--eval-samples", "2", "--no-progress"]) == 0
    assert "the run's split" in capsys.readouterr().out


def test_pretrained_refuses_another_split_or_other_data(trained, synthetic_omniglot, tmp_path,
                                                        capsys):
    assert main(train_args(synthetic_omniglot, trained, "--pretrained", "--num-train",
                           "6")) == 2
    assert "--pretrained evaluates the run on its own split" in one_line_error(capsys)
    other = tmp_path / "other"
    shutil.copytree(synthetic_omniglot, other)
    first = sorted(other.rglob("*.png"))[0]
    shutil.copy(sorted(other.rglob("*.png"))[1], first)
    assert main(train_args(other, trained, "--pretrained")) == 2
    assert "other images than the run" in one_line_error(capsys)
    assert main(train_args(synthetic_omniglot, trained, "--pretrained", "--eval-samples",
                           "2")) == 0


def test_resume_checks_the_content_not_the_path(trained, synthetic_omniglot, tmp_path, capsys):
    moved = tmp_path / "moved" / "data"
    shutil.copytree(synthetic_omniglot, moved)  # new path, new modification times
    link = tmp_path / "link"
    link.symlink_to(synthetic_omniglot)
    assert main(train_args(moved, trained, "--resume", "--meta-iters", "3")) == 0
    assert main(train_args(link, trained, "--resume", "--meta-iters", "4")) == 0
    # A different image behind the original path is refused.
    first = sorted(moved.rglob("*.png"))[0]
    shutil.copy(sorted(moved.rglob("*.png"))[1], first)
    capsys.readouterr()
    before = (trained / "checkpoint.npz").read_bytes()
    assert main(train_args(moved, trained, "--resume", "--meta-iters", "5")) == 2
    err = one_line_error(capsys)
    assert "the data's content" in err
    assert (trained / "checkpoint.npz").read_bytes() == before


# -- resume to a larger --meta-iters --------------------------------------------------------

def test_resume_to_more_iterations_is_bit_identical_to_a_longer_run(tmp_path):
    model = tiny_model()
    classes = vector_classes()
    constant = dict(meta_step=0.5, meta_step_final=0.5)
    straight = train(model, classes, classes, small_config(meta_iters=10, **constant),
                     tmp_path / "a",
                     **QUIET)
    train(model, classes, classes, small_config(meta_iters=6, **constant), tmp_path / "b",
          **QUIET)
    logged = []
    extended = train(model, classes, classes, small_config(meta_iters=10, **constant),
                     tmp_path / "b",
                     resume=True, progress=False, log=logged.append)
    assert "extending" in logged[0] and "from 6 to 10 iterations" in logged[0]
    np.testing.assert_array_equal(straight.phi, extended.phi)
    a, _ = load_npz(tmp_path / "a" / "checkpoint.npz")
    b, meta = load_npz(tmp_path / "b" / "checkpoint.npz")
    assert a.keys() == b.keys() and meta["config"]["meta_iters"] == 10
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)

    def metrics(folder):
        records = [json.loads(x) for x in (folder / "metrics.jsonl").read_text().splitlines()]
        return [{k: v for k, v in r.items() if k != "seconds"} for r in records]

    assert metrics(tmp_path / "a") == metrics(tmp_path / "b")


def test_resume_still_refuses_other_changes_and_shrinking(tmp_path):
    model = tiny_model()
    classes = vector_classes()
    train(model, classes, classes, small_config(meta_iters=6), tmp_path / "run", **QUIET)
    with pytest.raises(InputError, match=r"meta_iters=4 \(checkpoint: 6; it may grow"):
        train(model, classes, classes, small_config(meta_iters=4), tmp_path / "run",
              resume=True, **QUIET)
    with pytest.raises(InputError, match=r"changed: inner_iters=3.*learning_rate=0.5"):
        train(model, classes, classes,
              small_config(meta_iters=12, learning_rate=0.5, inner_iters=3), tmp_path / "run",
              resume=True, **QUIET)


# -- failed commands leave nothing behind ---------------------------------------------------

def test_failed_commands_leave_no_run_folder(tmp_path, synthetic_omniglot, capsys):
    cases = [
        (train_args(synthetic_omniglot, tmp_path / "a", "--resume"),
         "pretraining.npz' exists; drop --resume"),
        (train_args(synthetic_omniglot, tmp_path / "b", "--train-shots", "50"), "50"),
        (train_args(synthetic_omniglot, tmp_path / "c", "--classes", "100000"), "--classes"),
    ]
    for argv, message in cases:
        capsys.readouterr()
        assert main(argv) == 2
        captured = capsys.readouterr()
        assert message in captured.err and captured.err.count("\n") == 1, captured.err
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    # --classes 100000 is refused before the 25.8M-parameter table is printed.
    assert "parameters" not in captured.out


def test_checkpoint_naming_a_file_is_refused_clearly(tmp_path, synthetic_omniglot, capsys):
    target = tmp_path / "file"
    target.write_text("not a folder")
    assert main(train_args(synthetic_omniglot, target)) == 2
    assert "--checkpoint" in (err := one_line_error(capsys)) and "is a file" in err


def test_interrupted_training_says_how_to_continue(tmp_path, synthetic_omniglot, capsys,
                                                   monkeypatch):
    import minireptile.cli.fewshot_commands as fewshot

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(fewshot, "train", interrupted)
    assert main(train_args(synthetic_omniglot, tmp_path / "run")) == 130
    err = one_line_error(capsys)
    assert "interrupted" in err and "--resume" in err


def test_full_disk_names_the_checkpoint_and_keeps_the_old_one(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.npz"
    save_npz_atomic(path, {"phi": np.arange(3.0)}, {"kind": "x"})
    before = path.read_bytes()

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "savez", full)
    with pytest.raises(OSError) as err:
        save_npz_atomic(path, {"phi": np.arange(4.0)}, {"kind": "x"})
    assert err.value.filename == str(path) and "No space left" in str(err.value)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.npz"]


def test_compressed_files_read_back_under_the_exact_name_and_errors_say_what_they_are(
        tmp_path):
    arrays = {"zeros": np.zeros(10_000)}
    save_npz_atomic(tmp_path / "plain", arrays, {"kind": "x"})
    save_npz_atomic(tmp_path / "packed", arrays, {"kind": "x"}, compress=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["packed", "plain"]
    assert (tmp_path / "packed").stat().st_size < (tmp_path / "plain").stat().st_size / 10
    packed, meta = load_npz(tmp_path / "packed")
    np.testing.assert_array_equal(packed["zeros"], arrays["zeros"])
    assert meta == {"kind": "x"}
    with pytest.raises(InputError, match="^vote file .* does not exist"):
        load_npz(tmp_path / "missing", what="vote file")
    (tmp_path / "text").write_text("not a zip file")
    with pytest.raises(InputError, match="^vote file .* not a readable .npz"):
        load_npz(tmp_path / "text", what="vote file")


def test_written_files_get_the_permissions_of_any_new_file(tmp_path):
    # Written beside the target and renamed, a checkpoint must still be as readable as a
    # file written in place: 0666 less the umask, not a private temporary file's 0600.
    previous = os.umask(0o027)
    try:
        save_npz_atomic(tmp_path / "checkpoint.npz", {"phi": np.zeros(2)})
        (tmp_path / "in_place").write_bytes(b"")
    finally:
        os.umask(previous)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in tmp_path.iterdir()}
    assert modes == {"checkpoint.npz": 0o640, "in_place": 0o640}


# -- installation, messages, cache ----------------------------------------------------------

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Drops the editable install's import hook, so the source folder is found only as the
# current directory on sys.path, as after `pip install .` run from the repository root.
NO_EDITABLE_HOOK = ("import sys; sys.meta_path[:] = [f for f in sys.meta_path if not "
                    "(getattr(f, '__module__', '') or type(f).__module__)"
                    ".startswith('__editable__')]; ")


@pytest.mark.parametrize("code", [
    "import minireptile, minireptile.kernels.conv as c; "
    "assert c.__file__.endswith('kernels/conv.py'), c.__file__; print('ok')",
    "import runpy, sys; sys.argv = ['minireptile', '--help']; "
    "runpy.run_module('minireptile', run_name='__main__')",
])
def test_the_package_imports_from_the_repository_root(code):
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-c", NO_EDITABLE_HOOK + code], cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "ok" in result.stdout or "usage: minireptile" in result.stdout


def test_python_m_minireptile_runs_the_command_line():
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "minireptile", "sine", "--inner-lr", "nan"],
                            cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "--inner-lr" in result.stderr


def test_corrupt_png_names_its_member_not_a_buffer(tmp_path):
    from minireptile.data.omniglot import read_omniglot_source

    folder = tmp_path / "data" / "Alpha" / "character01"
    folder.mkdir(parents=True)
    (folder / "0001_01.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(InputError) as err:
        read_omniglot_source(tmp_path / "data", progress=False)
    assert "0001_01.png" in str(err.value) and "BytesIO" not in str(err.value)


def test_sine_outputs_are_checked_before_training(tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("running as a user who can write anywhere")
        for flag in ("--plot", "--save"):
            with pytest.raises(SystemExit) as stop:
                main(["sine", flag, str(locked / "out.file")])
            assert stop.value.code == 2
            err = one_line_error(capsys)
            assert flag in err and "not writable" in err
    finally:
        locked.chmod(0o700)


def test_sine_save_failure_names_the_target(tmp_path, monkeypatch, capsys):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "savez", full)
    target = tmp_path / "phi.npz"
    assert main(["sine", "--iterations", "2", "--eval-tasks", "0", "--no-progress",
                 "--save", str(target)]) == 2
    err = one_line_error(capsys)
    assert str(target) in err and "No space left on device" in err and ".tmp-" not in err
    assert sorted(tmp_path.iterdir()) == []


def test_miniimagenet_given_a_zip_says_so(synthetic_omniglot, tmp_path, capsys):
    archive = shutil.make_archive(str(tmp_path / "omniglot"), "zip", synthetic_omniglot)
    assert main(["train", "miniimagenet", "--data", archive, "--meta-iters", "1",
                 "--checkpoint", str(tmp_path / "run")]) == 2
    err = one_line_error(capsys)
    assert "is a zip file, not a folder" in err and "does not exist" not in err


def test_eval_help_shows_plain_percent_and_no_none_defaults(capsys):
    for words in (["eval", "omniglot"], ["eval", "miniimagenet"], ["eval", "lake"]):
        with pytest.raises(SystemExit):
            main(words + ["--help"])
        out = capsys.readouterr().out
        assert "%%" not in out and "default None" not in out and "95%" in out


def test_the_image_cache_keeps_one_file_per_source(tmp_path, synthetic_omniglot):
    from minireptile.data.omniglot import load_omniglot_source

    cache = tmp_path / "cache"
    data = tmp_path / "data"
    shutil.copytree(synthetic_omniglot, data)
    load_omniglot_source(data, cache_dir=cache, progress=False)
    load_omniglot_source(data, cache_dir=cache, progress=False)
    assert len(list(cache.iterdir())) == 1
    # The folder changes: its old entry can never be hit again and goes.
    png = sorted(data.rglob("*.png"))[0]
    os.utime(png, ns=(1, 1))
    load_omniglot_source(data, cache_dir=cache, progress=False)
    assert len(list(cache.iterdir())) == 1
    # Another source's entry stays while the source exists and goes when it is deleted.
    other = tmp_path / "other"
    shutil.copytree(synthetic_omniglot, other)
    load_omniglot_source(other, cache_dir=cache, progress=False)
    assert len(list(cache.iterdir())) == 2
    shutil.rmtree(other)
    os.utime(png, ns=(2, 2))
    load_omniglot_source(data, cache_dir=cache, progress=False)
    assert len(list(cache.iterdir())) == 1


def test_gitignore_covers_virtual_environments():
    with open(os.path.join(REPO, ".gitignore"), encoding="utf-8") as f:
        assert ".venv/" in f.read().split()


def test_data_omniglot_fetches_and_checks_lakes_runs(tmp_path, monkeypatch, capsys):
    import dataclasses
    import functools
    import http.server
    import threading

    from minireptile.data import download
    from minireptile.data.cache import file_sha256
    from minireptile.testing import make_lake_fixture

    served = tmp_path / "served"
    runs = tmp_path / "build" / "all_runs"
    make_lake_fixture(runs, [[np.eye(28, dtype=np.uint8)] * 2 for _ in range(20)], 1,
                      np.random.default_rng(0))
    (served / "one-shot-classification").mkdir(parents=True)
    archive = shutil.make_archive(str(served / "one-shot-classification" / "all_runs"), "zip",
                                  runs)
    real = download.RELEASES["all_runs"]
    assert (real.folder, real.size) == ("one-shot-classification", 352787)
    fake = dataclasses.replace(real, size=os.path.getsize(archive), sha256=file_sha256(archive))
    monkeypatch.setitem(download.RELEASES, "all_runs", fake)
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(http.server.SimpleHTTPRequestHandler,
                                            directory=str(served)))
    server.RequestHandlerClass.log_message = lambda *args: None
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                     daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        dest = tmp_path / "dest"
        argv = ["data", "omniglot", "--dest", str(dest), "--base-url", url, "--only",
                "all_runs", "--no-progress"]
        assert main(argv) == 0
        out = capsys.readouterr().out
        assert f"eval lake --runs {dest / 'all_runs.zip'}" in out
        assert sorted(p.name for p in dest.iterdir()) == ["all_runs.zip"]  # kept as a zip
        # A file with the wrong hash is refused by name.
        monkeypatch.setitem(download.RELEASES, "all_runs",
                            dataclasses.replace(fake, sha256="0" * 64))
        (dest / "all_runs.zip").unlink()
        assert main(argv) == 2
        assert "all_runs.zip" in capsys.readouterr().err
    finally:
        server.shutdown()
        server.server_close()


# -- hostile or broken inputs ---------------------------------------------------------------

def _png_bytes(array):
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(array).save(out, format="PNG")
    return out.getvalue()


@pytest.mark.parametrize("shape, message", [
    ((1, 1), "is 1×1 pixels"),
    ((105, 60), "is 60×105 pixels"),
    ((20, 20), "is 20×20 pixels"),
])
def test_images_of_the_wrong_size_are_refused(tmp_path, shape, message):
    from minireptile.data.omniglot import read_omniglot_source

    folder = tmp_path / "data" / "Alpha" / "character01"
    folder.mkdir(parents=True)
    (folder / "0001_01.png").write_bytes(_png_bytes(np.full(shape, 255, np.uint8)))
    with pytest.raises(InputError, match=message + ".*square and at least 28×28"):
        read_omniglot_source(tmp_path / "data", progress=False)


def test_rgb_png_is_thresholded_like_a_gray_one(tmp_path):
    from minireptile.data.omniglot import read_omniglot_source

    folder = tmp_path / "data" / "Alpha" / "character01"
    folder.mkdir(parents=True)
    rgb = np.full((105, 105, 3), 250, np.uint8)
    rgb[30:70, 30:70] = (10, 20, 30)
    (folder / "0001_01.png").write_bytes(_png_bytes(rgb))
    pool = read_omniglot_source(tmp_path / "data", progress=False)
    assert pool.images.shape == (1, 28, 28) and set(np.unique(pool.images)) == {0, 1}


def test_zip_member_declaring_a_huge_size_is_refused_before_inflating(tmp_path):
    import zipfile

    from minireptile.data.omniglot import MAX_IMAGE_BYTES, read_omniglot_source

    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("root/Alpha/character01/0001_01.png",
                         _png_bytes(np.full((28, 28), 255, np.uint8)))
        with archive.open("root/Alpha/character01/0001_02.png", "w", force_zip64=True) as f:
            block = bytes(1 << 20)
            for _ in range(MAX_IMAGE_BYTES // len(block) + 1):
                f.write(block)
    assert bomb.stat().st_size < 100_000
    with pytest.raises(InputError, match="0001_02.png.*declares 9,437,184 bytes"):
        read_omniglot_source(bomb, progress=False)


def test_names_that_are_not_utf8_are_read_or_refused_clearly(tmp_path):
    from minireptile.data.omniglot import read_omniglot_source

    root = tmp_path / "data"
    folder = os.path.join(os.fsencode(root), b"Alph\xff", b"character01")
    os.makedirs(folder)
    with open(os.path.join(folder, b"0001_\xfe.png"), "wb") as f:
        f.write(_png_bytes(np.full((28, 28), 255, np.uint8)))
    pool = read_omniglot_source(root, progress=False)
    # The name keeps the undecodable bytes (as surrogate escapes) and is printable.
    assert len(pool.names) == 1 and pool.names[0].endswith("/character01")
    argv = ["data", "info", "--data", str(root), "--num-train", "0", "--cache-dir",
            str(tmp_path / "cache"), "--no-progress"]
    assert main(argv) == 0 and main(argv) == 0  # through the cache, twice
    with open(os.path.join(folder, b"0002_\xfe.png"), "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n broken")
    assert main(argv) == 2  # the message names the file, escaped


def test_concurrent_runs_in_one_folder_are_refused(tmp_path):
    from minireptile.runs.runlock import RunLock

    model = tiny_model()
    classes = vector_classes()
    with RunLock(str(tmp_path / "run")):
        with pytest.raises(InputError, match="another process is training in"):
            train(model, classes, classes, small_config(), tmp_path / "run", **QUIET)
    train(model, classes, classes, small_config(), tmp_path / "run", **QUIET)
    assert (tmp_path / "run" / "checkpoint.npz").exists()


def test_concurrent_command_line_runs_in_one_folder(tmp_path, synthetic_omniglot):
    import subprocess
    import sys
    import time

    argv = [sys.executable, "-m", "minireptile"] + train_args(
        synthetic_omniglot, tmp_path / "run", "--meta-iters", "100000", "--checkpoint-interval",
        "1")
    first = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             cwd=tmp_path)
    try:
        deadline = time.time() + 120
        while not (tmp_path / "run" / "checkpoint.npz").exists() and time.time() < deadline:
            time.sleep(0.05)
        second = subprocess.run(argv + ["--resume"], capture_output=True, text=True,
                                cwd=tmp_path, timeout=120)
        assert second.returncode == 2 and "another process is training" in second.stderr
    finally:
        first.kill()
        first.wait()


def test_checkpoints_of_a_newer_format_or_another_model_are_refused(trained, capsys):
    arrays, meta = load_npz(trained / "checkpoint.npz")
    newer = trained.parent / "newer"
    newer.mkdir()
    save_npz_atomic(newer / "checkpoint.npz", arrays, dict(meta, format=99))
    assert main(["eval", "omniglot", "--checkpoint", str(newer), "--no-progress"]) == 2
    assert "format 99, newer than" in one_line_error(capsys)
    assert main(["eval", "miniimagenet", "--checkpoint", str(trained), "--no-progress"]) == 2
    err = one_line_error(capsys)
    assert "holds a omniglot" in err or "omniglot" in err


def test_checkpoint_of_the_first_format_is_still_evaluated(trained, synthetic_omniglot,
                                                           tmp_path, capsys):
    # The same run in the current format, for comparison (its own folder: evaluation
    # records stay apart).
    current = tmp_path / "current"
    shutil.copytree(trained, current)
    arrays, meta = load_npz(trained / "checkpoint.npz")
    del meta["format"]
    meta["extra"]["data"] = {"sources": [str(synthetic_omniglot)], "num_train": 8,
                             "train_alphabet": None}
    save_npz_atomic(trained / "checkpoint.npz", arrays, meta)

    def accuracies(run):
        capsys.readouterr()
        assert main(["eval", "omniglot", "--checkpoint", str(run), "--eval-samples", "4",
                     "--workers", "1", "--no-progress"]) == 0
        return [line for line in capsys.readouterr().out.splitlines() if "accuracy:" in line]

    # The same network, split and tasks: the same numbers, whichever the format.
    expected = accuracies(current)
    assert [line.split(":")[0] for line in expected] == ["Train accuracy", "Test accuracy"]
    assert accuracies(trained) == expected
    # Resumed, it continues exactly as the current format's run does.
    for run in (trained, current):
        assert main(train_args(synthetic_omniglot, run, "--resume", "--meta-iters", "3",
                               "--workers", "1")) == 0
    resumed, meta = load_npz(trained / "checkpoint.npz")
    assert meta["next_iteration"] == 3
    np.testing.assert_array_equal(resumed["phi"], load_npz(current / "checkpoint.npz")[0]["phi"])


def test_an_evaluation_record_never_answers_for_another_split(tmp_path):
    from minireptile.runs.evaluation import evaluate_splits

    model = tiny_model()
    classes = vector_classes()
    first, second = classes.subset(np.arange(4)), classes.subset(np.arange(3, 8))
    # An untrained network: its accuracies vary from task to task and split to split.
    learner = FewShotLearner(model, model.init_params(np.random.default_rng(0)),
                             InnerConfig(batch=3, iters=2))
    settings = (3, 1, 3, 1, False)

    def evaluate(split, record_dir):
        return evaluate_splits(learner, {"test": split}, ["test"], settings, 30,
                               np.random.default_rng(5), record_dir=record_dir,
                               log=lambda *_: None)["test"]

    (tmp_path / "run").mkdir()
    on_first = evaluate(first, tmp_path / "run")  # leaves a finished record in the run folder
    expected = evaluate(second, None)
    assert not np.array_equal(on_first[2], expected[2])
    got = evaluate(second, tmp_path / "run")
    np.testing.assert_array_equal(got[2], expected[2])


def test_scoring_a_run_another_way_keeps_the_first_record(tmp_path):
    import shutil

    from minireptile.runs import evaluation

    model = tiny_model()
    classes = vector_classes()
    learner = FewShotLearner(model, model.init_params(np.random.default_rng(0)),
                             InnerConfig(batch=3, iters=2, learning_rate=0.05))
    lines = []

    def evaluate(eval_iters, record_dir):
        lines.clear()
        return evaluation.evaluate_splits(learner, {"test": classes}, ["test"],
                                          (3, 1, 3, eval_iters, False), 30,
                                          np.random.default_rng(5), record_dir=record_dir,
                                          log=lines.append)["test"][2]

    run = tmp_path / "run"
    run.mkdir()
    few_steps, more_steps = evaluate(1, run), evaluate(10, run)
    assert not np.array_equal(few_steps, more_steps) and lines == []
    assert len(list((run / evaluation.RECORD_FOLDER).glob("[!.]*.npz"))) == 2
    # Each answers its own evaluation again at once, the other's record notwithstanding.
    np.testing.assert_array_equal(evaluate(1, run), few_steps)
    assert lines == [f"resuming the evaluation recorded in "
                     f"{evaluation.record_path(run, _recorded_key(run, 0))}: 30 of 30 tasks done"]
    # A record kept where a run held its single record before still answers.
    old = tmp_path / "old"
    old.mkdir()
    shutil.move(str(evaluation.record_path(run, _recorded_key(run, 1))),
                old / evaluation.LEGACY_RECORD_FILE)
    np.testing.assert_array_equal(evaluate(10, old), more_steps)
    assert lines == [f"resuming the evaluation recorded in "
                     f"{old / evaluation.LEGACY_RECORD_FILE}: 30 of 30 tasks done"]


def _recorded_key(run, index):
    """The key of the ``index``-th record (by number of fine-tuning steps) in a run folder."""
    from minireptile.npzfile import load_npz

    keys = [load_npz(path)[1]["key"] for path in (run / "evaluations").glob("*.npz")]
    return sorted(keys, key=lambda key: key["settings"][3])[index]


def test_workers_end_when_their_parent_is_killed(tmp_path):
    import signal

    workers = _workers_of_a_killed_parent(
        "import os, sys, time\n"
        "from minireptile.parallel.executor import ProcessExecutor\n"
        "executor = ProcessExecutor(2)\n"
        "executor.map(time.sleep, [0.0, 0.0])\n"
        "print(' '.join(str(p) for p in executor._pool._processes), flush=True)\n"
        "time.sleep(600)\n", signal.SIGTERM, tmp_path)
    assert not _lingering(workers), "workers outlived their parent"


def test_workers_still_starting_end_when_their_parent_is_killed(tmp_path):
    """A parent killed while its workers are still starting: each worker must watch the
    parent that forked it, not whichever process has adopted it by the time it looks."""
    import signal

    workers = _workers_of_a_killed_parent(
        "import time\n"
        "import minireptile.parallel.executor as executor\n"
        "executor.set_threads = lambda threads: time.sleep(3)  # a slow start\n"
        "pool = executor.ProcessExecutor(2)._ensure_pool()\n"
        "pool.submit(time.sleep, 0)\n"
        "print(' '.join(str(p) for p in pool._processes), flush=True)\n"
        "time.sleep(600)\n",
        signal.SIGKILL, tmp_path)  # while the workers are in their 3-second start
    assert not _lingering(workers), "workers outlived their parent"


def _workers_of_a_killed_parent(script, signal_number, folder):
    """Run ``script`` (which prints its two workers' pids on one line, then waits), send it
    ``signal_number`` once it has printed them, wait for it to end, and return the pids."""
    import subprocess
    import sys

    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                              cwd=folder)
    workers = [int(p) for p in parent.stdout.readline().split()]
    assert len(workers) == 2
    parent.send_signal(signal_number)
    parent.wait(timeout=30)
    return workers


def _lingering(pids, seconds=20):
    """The processes among ``pids`` still alive after ``seconds`` (killed before returning,
    so a failing test leaves none behind)."""
    import signal
    import time

    def alive(pid):
        try:
            with open(f"/proc/{pid}/stat") as f:
                return f.read().split()[2] != "Z"
        except FileNotFoundError:
            return False

    deadline = time.time() + seconds
    while any(alive(pid) for pid in pids) and time.time() < deadline:
        time.sleep(0.1)
    lingering = [pid for pid in pids if alive(pid)]
    for pid in lingering:
        os.kill(pid, signal.SIGKILL)
    return lingering
