"""Figures (matplotlib is an optional extra: ``pip install minireptile[plot]``)."""

from .errors import InputError


def require_matplotlib():
    """Import matplotlib with a file-only backend, or explain how to install it."""
    try:
        import matplotlib
    except ImportError:
        raise InputError(
            "plotting needs matplotlib, which is not installed; "
            "run: pip install 'minireptile[plot]'"
        ) from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_sine_fit(path, x_all, task, train_idx, curve):
    """The true curve, the training points and predictions after each fine-tuning step count.

    Parameters
    ----------
    x_all : ndarray, shape (50, 1)
    curve : dict of int to (mse, predictions (50, 1))
    """
    plt = require_matplotlib()
    fig, ax = plt.subplots(figsize=(7, 5))
    ax.plot(x_all[:, 0], task(x_all)[:, 0], color=(0, 1, 0), label="true")
    last = max(curve)
    for step, (_, pred) in sorted(curve.items()):
        frac = step / last if last else 0
        ax.plot(x_all[:, 0], pred[:, 0], color=(frac, 0, 1 - frac), label=f"pred after {step}")
    ax.plot(x_all[train_idx, 0], task(x_all[train_idx])[:, 0], "x", color="k", label="train")
    ax.set_ylim(-5.5, 5.5)
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.set_title(f"fine-tuning on 10 points: mse after {last} steps {curve[last][0]:.3f}")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
