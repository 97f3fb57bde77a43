"""The paper's Taylor analysis of Reptile, first-order MAML and MAML, measured.

With SGD inner steps of size α on k mini-batches of a task, and at Φ the mini-batch gradients
``ḡ_i = ∇L_i(Φ)`` and Hessians ``H̄_i``, the expectations over tasks and mini-batches are, to
O(α²) (Nichol, Achiam & Schulman 2018, section 5)::

    E[g_Reptile] = k·AvgGrad − ½k(k−1)·α·AvgGradInner        (g_Reptile = g_1 + … + g_k)
    E[g_FOMAML]  =   AvgGrad −   (k−1)·α·AvgGradInner        (g_FOMAML  = g_k)
    E[g_MAML]    =   AvgGrad −  2(k−1)·α·AvgGradInner

with ``AvgGrad = E[ḡ]`` and ``AvgGradInner = E[H̄_i·ḡ_j]`` over two *different* mini-batches
of one task. Here the k mini-batches of a draw are distinct batches of the task (a
k-permutation), so every ordered pair (i ≠ j) is alike and the formulas hold exactly to O(α²).

Per draw, the first-order expansion keeps the order of the steps,
``g_i = ḡ_i − α·H̄_i·Σ_{j<i} ḡ_j + O(α²)``, which gives per-draw expansions whose expectations
are the three above. Their differences from the per-draw meta-gradients are O(α²) draw by
draw, so averaged over Monte-Carlo draws they estimate the residual with error bars that
shrink with α as well (:func:`monte_carlo`).
"""

import itertools

import numpy as np

from .maml import backpropagate_through_sgd

ALGORITHMS = ("reptile", "foml", "maml")


def meta_gradients(model, phi, batches, lr):
    """``{"reptile": Σ g_i, "foml": g_k, "maml": g_MAML}`` for one sequence of k mini-batches
    ``[(x, y), …]``, SGD on the mean loss with step ``lr`` from Φ."""
    w = phi.copy()
    grads, trajectory = [], []
    for i, (x, y) in enumerate(batches):
        _, g = model.loss_and_grad(w, x, y)
        grads.append(g)
        if i < len(batches) - 1:
            trajectory.append((w.copy(), x, y, 1.0))
            w -= w.dtype.type(lr) * g
    return {"reptile": np.sum(grads, axis=0), "foml": grads[-1],
            "maml": backpropagate_through_sgd(model, trajectory, grads[-1], lr)}


def leading_terms(model, phi, batches):
    """The α-free pieces of one draw at Φ.

    Returns
    -------
    dict of ndarray, each shape (size,)
        ``avg_grad`` (mean of the ḡ_i), ``avg_grad_inner`` (mean of H̄_i·ḡ_j over the ordered
        pairs i ≠ j), and the per-draw expansion's pieces: ``sum`` Σ ḡ_i, ``last`` ḡ_k,
        ``earlier`` Σ_i H̄_i Σ_{j<i} ḡ_j, ``last_earlier`` H̄_k Σ_{j<k} ḡ_j and
        ``earlier_last`` Σ_{i<k} H̄_i ḡ_k.
    """
    k = len(batches)
    grads = [model.loss_and_grad(phi, x, y)[1] for x, y in batches]
    total = np.sum(grads, axis=0)
    earlier = np.zeros_like(phi)
    prefix = np.zeros_like(phi)
    last_earlier = np.zeros_like(phi)
    earlier_last = np.zeros_like(phi)
    inner = np.zeros_like(phi)
    for i, (x, y) in enumerate(batches):
        if i > 0:
            term = model.hvp(phi, x, y, prefix)
            earlier += term
            if i == k - 1:
                last_earlier = term
        if i < k - 1:
            earlier_last += model.hvp(phi, x, y, grads[-1])
        if k > 1:
            inner += model.hvp(phi, x, y, total - grads[i])
        prefix = prefix + grads[i]
    return {"avg_grad": total / k, "avg_grad_inner": inner / max(k * (k - 1), 1),
            "sum": total, "last": grads[-1], "earlier": earlier,
            "last_earlier": last_earlier, "earlier_last": earlier_last}


def expansion(avg_grad, avg_grad_inner, k, lr):
    """The paper's three O(α²) expansions, ``{"reptile": …, "foml": …, "maml": …}``."""
    return {
        "reptile": k * avg_grad - 0.5 * k * (k - 1) * lr * avg_grad_inner,
        "foml": avg_grad - (k - 1) * lr * avg_grad_inner,
        "maml": avg_grad - 2 * (k - 1) * lr * avg_grad_inner,
    }


def draw_expansion(terms, lr):
    """The per-draw, order-keeping expansions (their expectations are :func:`expansion`'s)."""
    return {
        "reptile": terms["sum"] - lr * terms["earlier"],
        "foml": terms["last"] - lr * terms["last_earlier"],
        "maml": terms["last"] - lr * (terms["last_earlier"] + terms["earlier_last"]),
    }


def k_permutations(num_batches, k):
    """Every ordered choice of k distinct mini-batch indices out of ``num_batches``."""
    return list(itertools.permutations(range(num_batches), k))


def exact_expectations(model, phi, tasks, k, lrs):
    """Exact expectations over equally likely tasks, each a list of mini-batches, and every
    k-permutation of a task's mini-batches.

    Returns
    -------
    expected : dict lr -> dict algorithm -> ndarray
        E[g] at each step size.
    avg_grad, avg_grad_inner : ndarray
    """
    expected = {lr: {a: np.zeros_like(phi) for a in ALGORITHMS} for lr in lrs}
    avg_grad = np.zeros_like(phi)
    avg_grad_inner = np.zeros_like(phi)
    draws = 0
    for batches in tasks:
        for order in k_permutations(len(batches), k):
            chosen = [batches[i] for i in order]
            terms = leading_terms(model, phi, chosen)
            avg_grad += terms["avg_grad"]
            avg_grad_inner += terms["avg_grad_inner"]
            for lr in lrs:
                for name, g in meta_gradients(model, phi, chosen, lr).items():
                    expected[lr][name] += g
            draws += 1
    for lr in lrs:
        for name in ALGORITHMS:
            expected[lr][name] /= draws
    return expected, avg_grad / draws, avg_grad_inner / draws


def monte_carlo(model, phi, draw_batches, k, lrs, draws, rng):
    """Monte-Carlo estimates of the residuals ``‖E[g] − expansion‖`` and the leading terms.

    Parameters
    ----------
    draw_batches : callable (rng, k) -> list of k (x, y)
        One task's k distinct mini-batches.
    lrs : sequence of float
        Step sizes α; every α sees the same draws (common random numbers).
    draws : int

    Returns
    -------
    dict with
        ``residual[name]``: array (len(lrs),) of ‖mean(g − per-draw expansion)‖;
        ``residual_se[name]``: its standard error, √(Σ var / draws) of the mean vector;
        ``avg_grad``, ``avg_grad_inner``: the estimates (mean over draws) and their standard
        errors ``avg_grad_se``, ``avg_grad_inner_se`` (norms, same rule);
        ``coefficient[name]``: array (len(lrs),), the fitted c in
        ``E[g] ≈ m·AvgGrad − c·α·AvgGradInner`` (m = k for Reptile, else 1), projected on
        AvgGradInner: the paper predicts ½k(k−1), k−1 and 2(k−1). Estimated draw by draw
        against the draw's own α = 0 value (Σ ḡ_i or ḡ_k), whose mean is m·AvgGrad, so the
        noise of the mini-batch gradients cancels.
    """
    lrs = list(lrs)
    diffs = {name: [[] for _ in lrs] for name in ALGORITHMS}
    gs = {name: [[] for _ in lrs] for name in ALGORITHMS}
    avg, inner = [], []
    for _ in range(draws):
        batches = draw_batches(rng, k)
        terms = leading_terms(model, phi, batches)
        avg.append(terms["avg_grad"])
        inner.append(terms["avg_grad_inner"])
        for j, lr in enumerate(lrs):
            approx = draw_expansion(terms, lr)
            for name, g in meta_gradients(model, phi, batches, lr).items():
                diffs[name][j].append(g - approx[name])
                base = terms["sum"] if name == "reptile" else terms["last"]
                gs[name][j].append((base - g) / lr)
    avg, inner = np.array(avg), np.array(inner)
    avg_grad, avg_grad_inner = avg.mean(axis=0), inner.mean(axis=0)
    out = {"avg_grad": avg_grad, "avg_grad_inner": avg_grad_inner,
           "avg_grad_se": _mean_se(avg), "avg_grad_inner_se": _mean_se(inner),
           "residual": {}, "residual_se": {}, "coefficient": {}}
    unit = avg_grad_inner / max(np.dot(avg_grad_inner, avg_grad_inner), 1e-300)
    for name in ALGORITHMS:
        out["residual"][name] = np.array(
            [np.linalg.norm(np.mean(d, axis=0)) for d in diffs[name]])
        out["residual_se"][name] = np.array([_mean_se(np.array(d)) for d in diffs[name]])
        out["coefficient"][name] = np.array([np.dot(np.mean(g, axis=0), unit)
                                             for g in gs[name]])
    return out


def _mean_se(samples):
    """Norm of the standard error of a mean vector: √(Σ_j var_j / n)."""
    n = len(samples)
    if n < 2:
        return float("nan")
    return float(np.sqrt(samples.var(axis=0, ddof=1).sum() / n))


def loglog_slope(lrs, values):
    """Least-squares slope of log(values) against log(lrs)."""
    return float(np.polyfit(np.log(lrs), np.log(values), 1)[0])


def predicted_coefficient(name, k):
    """The paper's coefficient of ``α·AvgGradInner``: ½k(k−1), k−1 or 2(k−1)."""
    return {"reptile": 0.5 * k * (k - 1), "foml": k - 1, "maml": 2 * (k - 1)}[name]


def residual_table(model, points, draw_batches, ks, lrs, draws, seed):
    """Run :func:`monte_carlo` at each named Φ and each k; one row per (Φ, k, algorithm, α).

    Parameters
    ----------
    points : dict of str to ndarray
        Named parameter vectors, e.g. ``{"init": …, "trained": …}``.
    draw_batches : callable (rng, k) -> list of k (x, y)
    ks, lrs : sequences of int and float
    draws : int
    seed : int
        Every (Φ, k) draws the same tasks from ``seed``.

    Returns
    -------
    rows : list of dict
        ``point, k, algorithm, lr, residual, residual_se, coefficient, predicted,
        avg_grad_norm, avg_grad_se, avg_grad_inner_norm, avg_grad_inner_se``.
    """
    rows = []
    for point, phi in points.items():
        for k in ks:
            result = monte_carlo(model, phi, draw_batches, k, lrs, draws,
                                 np.random.default_rng(seed))
            for name in ALGORITHMS:
                for j, lr in enumerate(lrs):
                    rows.append({
                        "point": point, "k": k, "algorithm": name, "lr": lr,
                        "residual": float(result["residual"][name][j]),
                        "residual_se": float(result["residual_se"][name][j]),
                        "coefficient": float(result["coefficient"][name][j]),
                        "predicted": predicted_coefficient(name, k),
                        "avg_grad_norm": float(np.linalg.norm(result["avg_grad"])),
                        "avg_grad_se": result["avg_grad_se"],
                        "avg_grad_inner_norm": float(np.linalg.norm(result["avg_grad_inner"])),
                        "avg_grad_inner_se": result["avg_grad_inner_se"],
                    })
    return rows


def summarise(rows):
    """Per (Φ, k, algorithm): the log-log slope of the residual against α and the
    coefficient fitted at the smallest α. Returns a list of dicts."""
    groups = {}
    for row in rows:
        groups.setdefault((row["point"], row["k"], row["algorithm"]), []).append(row)
    summary = []
    for (point, k, name), group in groups.items():
        group = sorted(group, key=lambda r: r["lr"])
        summary.append({
            "point": point, "k": k, "algorithm": name,
            "slope": loglog_slope([r["lr"] for r in group], [r["residual"] for r in group]),
            "coefficient": group[0]["coefficient"], "predicted": group[0]["predicted"],
            "avg_grad_norm": group[0]["avg_grad_norm"],
            "avg_grad_inner_norm": group[0]["avg_grad_inner_norm"],
            "avg_grad_inner_se": group[0]["avg_grad_inner_se"],
        })
    return summary


def write_csv(path, rows):
    """The rows of :func:`residual_table`, one per line, with a header."""
    import csv

    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
