"""``minireptile sine`` from the command line, and the atomic .npz checkpoint files."""

import os
import re
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from minireptile.cli import main
from minireptile.errors import InputError
from minireptile.npzfile import load_npz, save_npz_atomic
from minireptile.problems import sine

QUICK = ["sine", "--iterations", "4", "--eval-tasks", "6", "--no-progress"]
HELD_OUT = re.compile(r"^after +(\d+) steps: (\d+\.\d+) ± (\d+\.\d+)$")


def run(argv, capsys):
    """``main(argv)`` in-process: (exit status, stdout, stderr)."""
    try:
        status = main(argv)
    except SystemExit as exit_:
        status = exit_.code
    out, err = capsys.readouterr()
    return status, out, err


def held_out_lines(out):
    """The four ``after N steps: mean ± half`` lines after the held-out header as
    {N: mean} (only lines about written files may follow them)."""
    lines = out.rstrip("\n").splitlines()
    start = next(i for i, line in enumerate(lines)
                 if line.startswith("held-out mean squared error over")) + 1
    tail = [HELD_OUT.match(line) for line in lines[start:start + 4]]
    assert all(tail), lines[start - 1:]
    assert all(line.startswith(("parameters saved to", "plot written to"))
               for line in lines[start + 4:]), lines[start + 4:]
    return {int(m.group(1)): float(m.group(2)) for m in tail}


def test_sine_command_output_and_save(tmp_path, capsys):
    save = tmp_path / "phi.npz"
    status, out, err = run(QUICK + ["--seed", "3", "--save", str(save)], capsys)
    assert status == 0, err
    assert "4,353" in out
    results = held_out_lines(out)
    assert list(results) == [0, 1, 8, 32]
    # The checkpoint holds plain arrays and JSON metadata, loadable without pickle …
    with np.load(save, allow_pickle=False) as data:
        assert set(data.files) == {"params", "__metadata__"}
        params = data["params"]
    arrays, metadata = load_npz(save)
    np.testing.assert_array_equal(arrays["params"], params)
    assert metadata["config"]["iterations"] == 4 and metadata["config"]["seed"] == 3
    # … equal to training with the same settings in-process …
    phi, _ = sine.train(sine.SineConfig(iterations=4, seed=3))
    np.testing.assert_array_equal(params, phi)
    # … and the printed "after 0 steps" is the plain mean squared error of those parameters
    # on the held-out tasks (default --eval-seed 1000), computed here independently.
    model = sine.sine_model()
    x = sine.X_ALL.astype(np.float32)
    errors = [np.mean((model.predict(params, x) - task(x)) ** 2)
              for task, _ in sine.heldout_tasks(6, 1000)]
    assert results[0] == pytest.approx(np.mean(errors), abs=1e-4)
    assert not list(tmp_path.glob(".tmp-*"))


def test_sine_command_plot(tmp_path, capsys):
    pytest.importorskip("matplotlib", reason="plotting is the optional [plot] extra")
    plot = tmp_path / "fit.png"
    status, out, err = run(QUICK + ["--eval-tasks", "0", "--plot", str(plot)], capsys)
    assert status == 0, err
    data = plot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 10_000  # a 700×500 figure with curves, not an empty image
    assert f"plot written to {plot}" in out


def test_sine_command_in_a_subprocess(tmp_path):
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    proc = subprocess.run(
        [sys.executable, "-m", "minireptile", "sine", "--iterations", "10", "--eval-tasks", "3",
         "--no-progress"], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert list(held_out_lines(proc.stdout)) == [0, 1, 8, 32]
    assert "Traceback" not in proc.stderr


BAD = [
    (["--iterations", "0"], "0"),
    (["--iterations", "-5"], "-5"),
    (["--inner-batch", "51"], "51"),
    (["--plot", "/nonexistent/dir/x.png"], "/nonexistent/dir"),
    (["--save", "/nonexistent/dir/x.npz"], "/nonexistent/dir"),
    (["--meta-step", "abc"], "'abc'"),
    (["--meta-step", "nan"], "nan"),
    (["--meta-step-final", "-1"], "-1"),
    (["--outer", "rmsprop"], "'rmsprop'"),
]


@pytest.mark.parametrize("extra,value", BAD, ids=[" ".join(e) for e, _ in BAD])
def test_bad_input_is_one_line_and_status_2(extra, value, capsys):
    status, out, err = run(QUICK + extra, capsys)
    assert status == 2
    lines = err.rstrip("\n").splitlines()
    assert len(lines) == 1, err
    assert "error" in lines[0] and value in lines[0]
    assert "Traceback" not in err
    assert out == ""  # rejected before any work


def test_bad_input_in_a_subprocess_has_no_traceback(tmp_path):
    # Run outside the source tree, so "-m" imports the installed package.
    proc = subprocess.run([sys.executable, "-m", "minireptile", "sine", "--inner-batch", "51"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "51" in proc.stderr
    assert "Traceback" not in proc.stderr


# --- checkpoint files ---------------------------------------------------------------------------

def test_checkpoint_round_trip(tmp_path):
    path = tmp_path / "ckpt.npz"
    arrays = {"params": np.arange(10, dtype=np.float32) / 3, "m": np.zeros((2, 3)),
              "t": np.int64(7), "empty": np.zeros(0)}
    metadata = {"model": "mlp 1-64-64-1 (tanh)", "config": {"seed": 0, "lr": 0.02}, "note": "é"}
    save_npz_atomic(path, arrays, metadata)
    loaded, meta = load_npz(path)
    assert meta == metadata
    assert set(loaded) == set(arrays)
    for key, value in arrays.items():
        np.testing.assert_array_equal(loaded[key], value)
        assert loaded[key].dtype == np.asarray(value).dtype
    assert os.listdir(tmp_path) == ["ckpt.npz"]
    # Without metadata the loader returns an empty dict.
    save_npz_atomic(path, {"a": np.ones(2)})
    assert load_npz(path)[1] == {}
    assert os.listdir(tmp_path) == ["ckpt.npz"]


@pytest.mark.parametrize("keep", [0.1, 0.5, 0.9])
def test_truncated_checkpoint_raises_input_error(tmp_path, keep):
    path = tmp_path / "ckpt.npz"
    save_npz_atomic(path, {"params": np.random.default_rng(0).standard_normal(5000)}, {"a": 1})
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(InputError, match="truncated") as info:
        load_npz(path)
    assert str(path) in str(info.value)


def test_foreign_and_missing_files(tmp_path):
    text = tmp_path / "notes.npz"
    text.write_text("not a zip file")
    with pytest.raises(InputError, match="not a readable .npz"):
        load_npz(text)
    with pytest.raises(InputError, match="does not exist"):
        load_npz(tmp_path / "missing.npz")
    # An object array needs pickle to load: refused, as data must never be code.
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, obj=np.array([{"a": 1}], dtype=object))
    with pytest.raises(InputError):
        load_npz(pickled)


class Unwritable:
    """Raises while np.savez converts it, i.e. midway through writing the file."""

    def __array__(self, dtype=None, copy=None):
        raise RuntimeError("disk full (simulated)")


def test_failed_save_leaves_no_temporary_and_keeps_the_old_file(tmp_path):
    path = tmp_path / "ckpt.npz"
    save_npz_atomic(path, {"params": np.ones(3)}, {"version": 1})
    with pytest.raises(RuntimeError, match="simulated"):
        save_npz_atomic(path, {"params": np.zeros(3), "bad": Unwritable()}, {"version": 2})
    assert os.listdir(tmp_path) == ["ckpt.npz"]
    arrays, meta = load_npz(path)
    assert meta == {"version": 1}
    np.testing.assert_array_equal(arrays["params"], np.ones(3))
    assert zipfile.is_zipfile(path)
