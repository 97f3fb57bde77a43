"""Figures (matplotlib is an optional extra: ``pip install minireptile[plot]``)."""

from ..errors import InputError


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


def plot_taylor(path, rows):
    """Log-log residual ‖E[g] − expansion‖ against α, one panel per Φ, one line per
    (algorithm, k), with ±1 standard-error bars and an α² guide."""
    plt = require_matplotlib()
    points = list(dict.fromkeys(r["point"] for r in rows))
    fig, axes = plt.subplots(1, len(points), figsize=(6 * len(points), 4.5), squeeze=False)
    styles = {"reptile": "-", "foml": "--", "maml": ":"}
    for ax, point in zip(axes[0], points):
        mine = [r for r in rows if r["point"] == point]
        for name in styles:
            for k in sorted({r["k"] for r in mine}):
                line = sorted((r for r in mine if r["algorithm"] == name and r["k"] == k),
                              key=lambda r: r["lr"])
                if not line:
                    continue
                ax.errorbar([r["lr"] for r in line], [r["residual"] for r in line],
                            yerr=[r["residual_se"] for r in line], linestyle=styles[name],
                            marker="o", markersize=3, capsize=2, label=f"{name} k={k}")
        lrs = sorted({r["lr"] for r in mine})
        top = max(r["residual"] for r in mine if r["lr"] == lrs[-1])
        ax.plot(lrs, [top * (lr / lrs[-1]) ** 2 for lr in lrs], color="grey", linewidth=3,
                alpha=0.4, label="slope 2")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("inner step size α")
        ax.set_ylabel("‖E[g] − expansion‖")
        ax.set_title(f"Φ at {point}")
        ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
