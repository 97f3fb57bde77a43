"""The Python API: the package's exports, README.md's "Python API" examples, and the Examples
sections of the library's docstrings, all run as written."""

import doctest
import importlib
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import minireptile

REPO = Path(__file__).resolve().parent.parent
PACKAGE = Path(minireptile.__file__).resolve().parent

# What a researcher needs; removing one of these breaks user code.
PUBLIC = [
    "mlp", "Model", "omniglot_cnn", "miniimagenet_cnn", "ParamLayout",
    "SGD", "Adam", "OuterSGD", "OuterAdam", "linear_schedule", "meta_step", "reptile_step",
    "Reptile", "FirstOrderMAML", "MAML", "GradientCombination", "make_algorithm",
    "FewShotLearner", "InnerConfig", "evaluate_accuracy", "Task", "sample_task", "mini_batches",
    "ImagePool", "ClassSet", "Pretraining", "SineConfig", "train_sine", "TrainConfig", "train",
    "open_for_evaluation", "Run", "make_executor", "set_threads", "InputError", "DivergedError",
]


# -- exports ---------------------------------------------------------------------------------

def test_every_public_name_is_exported_and_resolves():
    assert set(PUBLIC) <= set(minireptile.__all__)
    for name in minireptile.__all__:
        assert getattr(minireptile, name) is not None, name
    assert minireptile.train.__module__ == "minireptile.runs.training"
    assert minireptile.train_sine.__module__ == "minireptile.problems.sine"
    assert issubclass(minireptile.InputError, ValueError)
    with pytest.raises(AttributeError, match="no attribute 'nonexistent'"):
        minireptile.nonexistent


def test_importing_the_package_loads_no_numpy():
    code = ("import sys, minireptile; "
            "assert 'numpy' not in sys.modules, 'numpy imported'; "
            "assert 'mlp' in dir(minireptile)")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


def test_a_pool_from_arrays_alone_and_a_wrong_dtype_refused():
    images = [np.zeros((2, 3, 3), np.uint8), np.ones((4, 3, 3), np.uint8)]
    pool = minireptile.ImagePool.from_classes(["a", "b"], images)
    assert pool.starts.tolist() == [0, 2, 6] and pool.scale == 1.0
    assert pool.files.tolist() == ["a/0", "a/1", "b/0", "b/1", "b/2", "b/3"]
    with pytest.raises(minireptile.InputError, match="class 'b'.*float64.*uint8"):
        minireptile.ImagePool.from_classes(["a", "b"], [images[0], np.ones((4, 3, 3))])


# -- README.md's "Python API" examples -------------------------------------------------------

def readme_examples():
    """``(title, code, expected output)`` of each example of the "Python API" section: a
    ```python block, followed by the ```text block of what it prints."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Python API\n", 1)[1].split("\n## ", 1)[0]
    examples = []
    for part in section.split("\n### ")[1:]:
        blocks = re.findall(r"^```(\w+)\n(.*?)^```$", part, re.M | re.S)
        kinds = [kind for kind, _ in blocks]
        assert kinds == ["python", "text"], (part.splitlines()[0], kinds)
        examples.append((part.splitlines()[0], blocks[0][1], blocks[1][1]))
    return examples


NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def assert_same_output(got, expected, abs_tol=0.05):
    """The same text, with every number within 10% or ``abs_tol`` of the README's: the last
    digits of a float32 computation differ from one processor to another (BLAS and the
    compiled kernels vectorise, and so round, by what the processor offers), and training
    amplifies them; the examples' own asserts check what they claim."""
    assert NUMBER.sub("#", got) == NUMBER.sub("#", expected), (got, expected)
    for g, e in zip(NUMBER.findall(got), NUMBER.findall(expected)):
        assert math.isclose(float(g), float(e), rel_tol=0.1, abs_tol=abs_tol), (got, expected)


def test_the_readme_has_the_three_examples():
    assert [title for title, _, _ in readme_examples()] == [
        "Reptile on your own tasks", "Few-shot classification on your own image classes",
        "Training a run and evaluating it later"]


# The classification example's accuracy after 200 meta-iterations, on 100 tasks, moves by
# several hundredths between processors (the README says so); its assert checks the gain.
@pytest.mark.parametrize("index, abs_tol", [(0, 0.05), (1, 0.1), (2, 0.05)],
                         ids=["regression", "classification", "saved-run"])
def test_readme_example_runs_and_prints_what_the_readme_shows(index, abs_tol, tmp_path,
                                                              monkeypatch, capsys):
    title, code, expected = readme_examples()[index]
    monkeypatch.chdir(tmp_path)
    exec(compile(code, f"README.md: {title}", "exec"), {"__name__": "__main__"})
    assert_same_output(capsys.readouterr().out, expected, abs_tol)


# -- the Examples sections of the docstrings -------------------------------------------------

def modules_with_examples():
    """Every module of the package whose docstrings hold a ``>>>`` example."""
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if ">>>" in path.read_text(encoding="utf-8"):
            parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
            names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def test_the_public_entry_points_have_examples():
    names = modules_with_examples()
    for module in ("algorithms.directions", "algorithms.meta_iteration", "problems.fewshot",
                   "problems.sine", "models.model", "models.cnn", "data.classes",
                   "runs.training", "runs.run"):
        assert f"minireptile.{module}" in names
    for name in ("mlp", "omniglot_cnn", "meta_step", "reptile_step", "make_algorithm",
                 "FewShotLearner", "ImagePool", "ClassSet", "train", "train_sine",
                 "open_for_evaluation"):
        assert "Examples\n" in getattr(minireptile, name).__doc__, name


@pytest.mark.parametrize("module", modules_with_examples())
def test_docstring_examples(module, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS,
                             report=True)
    assert result.attempted > 0
    assert result.failed == 0, f"{result.failed} example(s) of {module} failed (output above)"
