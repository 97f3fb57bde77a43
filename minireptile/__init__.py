"""minireptile: Reptile meta-learning from scratch in NumPy, with handwritten backprop.

Parameters live in one flat array Φ; models are functional
(``loss_and_grad(params, x, y)``, ``predict(params, x)``); the outer update is plain NumPy.

The Python API is the names of ``_EXPORTS`` below (``minireptile.__all__``): models
(``mlp``, ``omniglot_cnn``, ``Model``), the outer update and the algorithms (``meta_step``,
``reptile_step``, ``Reptile``, ``make_algorithm``, …), few-shot classification
(``FewShotLearner``, ``ClassSet``, ``evaluate_accuracy``, ``Ensemble``), sine regression
(``SineConfig``, ``train_sine``), runs with checkpoints (``TrainConfig``, ``train``,
``open_for_evaluation``) and the errors the library raises; README.md's "Python API" section
shows them at work.

The names are imported on first use, so that ``import minireptile`` (and the command
line's ``--help``) does not pay for NumPy, Numba and SciPy before they are needed.
"""

import importlib
import importlib.util
import os
import sys


def _map_source_kernels():
    """Make ``minireptile.kernels`` the repository's top-level ``kernels/`` folder when this
    package is imported from the source tree.

    An install maps ``kernels/`` to ``minireptile.kernels``; but run from the repository's
    root (``python -m pytest``, ``python -m minireptile``), the source folder ``minireptile/``
    comes first on ``sys.path`` and shadows the installed package, and it holds no kernels.
    (Only the folder is registered here; it and its modules are imported on first use.)
    """
    if importlib.util.find_spec(f"{__name__}.kernels") is not None:
        return
    folder = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                          "kernels")
    init = os.path.join(folder, "__init__.py")
    if not os.path.isfile(init):
        return
    spec = importlib.util.spec_from_file_location(f"{__name__}.kernels", init,
                                                  submodule_search_locations=[folder])
    # Loaded lazily: the package's own import (which sizes the thread pools) runs when a
    # kernel is first imported, as with an installed copy, not with ``import minireptile``.
    spec.loader = importlib.util.LazyLoader(spec.loader)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)


_map_source_kernels()

__version__ = "0.1.0"

# Public name -> the module defining it, imported on first use; "module:attribute" when the
# public name differs from the one in its module.
_EXPORTS = {
    # models over flat parameter vectors
    "Model": ".models.model",
    "mlp": ".models.model",
    "omniglot_cnn": ".models.cnn",
    "miniimagenet_cnn": ".models.cnn",
    "ParamLayout": ".models.params",
    # optimisers, the outer update and the algorithms
    "SGD": ".algorithms.optim",
    "Adam": ".algorithms.optim",
    "OuterSGD": ".algorithms.meta_iteration",
    "OuterAdam": ".algorithms.meta_iteration",
    "linear_schedule": ".algorithms.meta_iteration",
    "meta_step": ".algorithms.meta_iteration",
    "reptile_step": ".algorithms.meta_iteration",
    "Reptile": ".algorithms.directions",
    "FirstOrderMAML": ".algorithms.directions",
    "MAML": ".algorithms.directions",
    "GradientCombination": ".algorithms.directions",
    "make_algorithm": ".algorithms.directions",
    # few-shot classification
    "FewShotLearner": ".problems.fewshot",
    "InnerConfig": ".problems.fewshot",
    "evaluate_accuracy": ".problems.fewshot",
    "Ensemble": ".problems.ensemble",
    "Pretraining": ".problems.pretrain",
    "Task": ".problems.tasks",
    "sample_task": ".problems.tasks",
    "sample_eval_task": ".problems.tasks",
    "mini_batches": ".problems.tasks",
    "ImagePool": ".data.classes",
    "ClassSet": ".data.classes",
    # sine regression, the paper's toy problem
    "SineConfig": ".problems.sine",
    "train_sine": ".problems.sine:train",
    # runs: few-shot meta-training with checkpoints, and reopening a run
    "TrainConfig": ".runs.config",
    "train": ".runs.training",
    "Run": ".runs.run",
    "open_for_evaluation": ".runs.run",
    # cores and machines
    "make_executor": ".parallel",
    "set_threads": ".parallel.threads",
    # errors
    "InputError": ".errors",
    "DivergedError": ".guard",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'minireptile' has no attribute {name!r}")
    module, _, attribute = _EXPORTS[name].partition(":")
    value = getattr(importlib.import_module(module, __name__), attribute or name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(list(globals()) + __all__)
