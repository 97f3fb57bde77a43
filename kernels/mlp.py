"""A whole dense network — forward, loss and backward — in one compiled call.

For small multilayer perceptrons (the sine model has 4,353 parameters and trains on batches of
10) the arithmetic of a step takes a few microseconds, and calling one kernel per layer, per
activation and per loss from Python costs several times that. These kernels run the same
computation as :class:`~minireptile.nn.Sequential` of ``Linear`` and ``Tanh``/``ReLU`` layers
followed by a loss, reading and writing the model's flat parameter and gradient vectors
directly (layout: ``W₀, b₀, W₁, b₁, …`` with ``Wₗ`` of shape ``(sizes[l], sizes[l+1])``).

Their reference is the layer-by-layer path itself: the tests hold the fused result to it, and
both to finite differences.

float32 tanh uses a rational approximation (max. absolute error 3e-7 against float64 tanh,
about 2 ulp near ±1), which the compiler can inline, where a call into the C library for each
element would cost more than the matrix products; float64 uses the library's tanh.
"""

import numpy as np
from numba import njit

from .dense import _backward, _forward

TANH = 0
RELU = 1
MSE = 0
CROSS_ENTROPY = 1

_FAST = {"reassoc", "contract"}
# error_model="numpy": a float division by zero gives inf instead of raising, so the compiler
# need not check every divisor, which is what keeps the tanh loop from vectorising.
# tanh(x) = x·P(x²)/Q(x²) on [−C, C], clamped outside (where tanh rounds to ±1 in float32).
_TANH_CLAMP = 7.90531110763549805
_TANH_P = (
    -2.76076847742355e-16, 2.00018790482477e-13, -8.60467152213735e-11, 5.12229709037114e-08,
    1.48572235717979e-05, 6.37261928875436e-04, 4.89352455891786e-03,
)
_TANH_Q = (1.19825839466702e-06, 1.18534705686654e-04, 2.26843463243900e-03,
           4.89352518554385e-03)


@njit(cache=True, fastmath=_FAST, error_model="numpy")
def _tanh_inplace(z, rational):
    flat = z.reshape(-1)
    if not rational:
        for i in range(flat.size):
            flat[i] = np.tanh(flat[i])
        return
    c = np.float32(_TANH_CLAMP)
    p0, p1, p2, p3 = np.float32(_TANH_P[0]), np.float32(_TANH_P[1]), np.float32(_TANH_P[2]), np.float32(_TANH_P[3])
    p4, p5, p6 = np.float32(_TANH_P[4]), np.float32(_TANH_P[5]), np.float32(_TANH_P[6])
    q0, q1, q2, q3 = np.float32(_TANH_Q[0]), np.float32(_TANH_Q[1]), np.float32(_TANH_Q[2]), np.float32(_TANH_Q[3])
    for i in range(flat.size):
        x = flat[i]
        x = c if x > c else x
        x = -c if x < -c else x
        x2 = x * x
        p = ((((((p0 * x2 + p1) * x2 + p2) * x2 + p3) * x2 + p4) * x2 + p5) * x2 + p6) * x
        q = ((q0 * x2 + q1) * x2 + q2) * x2 + q3
        flat[i] = p / q


@njit(cache=True, fastmath=_FAST, error_model="numpy")
def _activate(z, activation, rational_tanh):
    if activation == TANH:
        _tanh_inplace(z, rational_tanh)
    else:
        flat = z.reshape(-1)
        for i in range(flat.size):
            if flat[i] < 0:
                flat[i] = 0


@njit(cache=True, fastmath=_FAST, error_model="numpy")
def _activation_backward(dh, h, activation):
    """``dh ← dh · f'(z)``, with f' written in terms of the output ``h = f(z)``."""
    d = dh.reshape(-1)
    out = h.reshape(-1)
    if activation == TANH:
        for i in range(d.size):
            d[i] *= 1 - out[i] * out[i]
    else:
        for i in range(d.size):
            if out[i] <= 0:
                d[i] = 0


@njit(cache=True, error_model="numpy")
def _forward_all(params, x, sizes, activation, acts, rational_tanh):
    """Run every layer, leaving each layer's output in ``acts``; return the last one."""
    batch = x.shape[0]
    n_layers = sizes.shape[0] - 1
    h = x
    p = 0
    a = 0
    for layer in range(n_layers):
        k = sizes[layer]
        n = sizes[layer + 1]
        w = params[p : p + k * n].reshape((k, n))
        b = params[p + k * n : p + k * n + n]
        p += k * n + n
        out = acts[a : a + batch * n].reshape((batch, n))
        a += batch * n
        _forward(h, w, b, out)
        if layer < n_layers - 1:
            _activate(out, activation, rational_tanh)
        h = out
    return h


@njit(cache=True, fastmath=_FAST, error_model="numpy")
def _loss_and_delta(out, targets, labels, loss_kind, delta):
    """Mean loss over the batch and ``delta = dL/d(out)``."""
    batch, n_out = out.shape
    total = 0.0
    if loss_kind == MSE:
        scale = 2.0 / (batch * n_out)
        for i in range(batch):
            for j in range(n_out):
                diff = out[i, j] - targets[i, j]
                total += diff * diff
                delta[i, j] = diff * scale
        return total / (batch * n_out)
    for i in range(batch):
        top = out[i, 0]
        for j in range(n_out):
            top = max(top, out[i, j])
        norm = 0.0
        for j in range(n_out):
            e = np.exp(out[i, j] - top)
            delta[i, j] = e
            norm += e
        total += np.log(norm) - (out[i, labels[i]] - top)
        for j in range(n_out):
            delta[i, j] = delta[i, j] / norm / batch
        delta[i, labels[i]] -= 1.0 / batch
    return total / batch


@njit(cache=True, error_model="numpy")
def _loss_and_grad(params, grad, x, targets, labels, sizes, activation, loss_kind, rational_tanh):
    batch = x.shape[0]
    n_layers = sizes.shape[0] - 1
    acts = np.empty(batch * sizes[1:].sum(), dtype=params.dtype)
    out = _forward_all(params, x, sizes, activation, acts, rational_tanh)
    widest = sizes.max()
    ping = np.empty(batch * widest, dtype=params.dtype)
    pong = np.empty(batch * widest, dtype=params.dtype)
    delta = ping[: batch * sizes[-1]].reshape((batch, sizes[-1]))
    in_ping = True
    loss = _loss_and_delta(out, targets, labels, loss_kind, delta)

    p_end = params.size
    a_end = acts.size
    no_dx = np.empty((0, 0), dtype=params.dtype)
    for layer in range(n_layers - 1, -1, -1):
        k = sizes[layer]
        n = sizes[layer + 1]
        b0 = p_end - n
        w0 = b0 - k * n
        p_end = w0
        a_end -= batch * n  # acts[a_end:] held this layer's output
        w = params[w0:b0].reshape((k, n))
        dw = grad[w0:b0].reshape((k, n))
        db = grad[b0 : b0 + n]
        if layer == 0:
            _backward(x, w, delta, dw, db, no_dx, False)
            break
        h_in = acts[a_end - batch * k : a_end].reshape((batch, k))
        spare = pong if in_ping else ping
        in_ping = not in_ping
        dx = spare[: batch * k].reshape((batch, k))
        _backward(h_in, w, delta, dw, db, dx, True)
        _activation_backward(dx, h_in, activation)
        delta = dx
    return loss


@njit(cache=True, error_model="numpy")
def _sgd_steps(params, x, targets, labels, flat_idx, starts, lr, sizes, activation, loss_kind,
               rational_tanh, losses):
    grad = np.empty_like(params)
    for step in range(starts.shape[0] - 1):
        idx = flat_idx[starts[step] : starts[step + 1]]
        xb = x[idx]
        tb = targets[idx] if loss_kind == MSE else targets
        lb = labels[idx] if loss_kind == CROSS_ENTROPY else labels
        losses[step] = _loss_and_grad(
            params, grad, xb, tb, lb, sizes, activation, loss_kind, rational_tanh
        )
        for i in range(params.size):
            params[i] -= lr * grad[i]


def mlp_predict(params, x, sizes, activation):
    """Output of the dense network for a batch.

    Parameters
    ----------
    params : ndarray, shape (n_params,), float32 or float64, C-contiguous
    x : ndarray, shape (batch, sizes[0]), params' dtype
    sizes : ndarray of int64, shape (n_layers + 1,)
    activation : int
        :data:`TANH` or :data:`RELU`, applied after every layer but the last.

    Returns
    -------
    ndarray, shape (batch, sizes[-1])
    """
    x = np.ascontiguousarray(x)
    acts = np.empty(len(x) * int(sizes[1:].sum()), dtype=params.dtype)
    rational = params.dtype == np.float32
    return _forward_all(params, x, sizes, activation, acts, rational).copy()


def mlp_loss_and_grad(params, grad, x, targets, labels, sizes, activation, loss_kind):
    """Mean loss of the dense network and its gradient, written into ``grad``.

    Parameters
    ----------
    params, grad : ndarray, shape (n_params,), same float dtype, C-contiguous
    x : ndarray, shape (batch, sizes[0]), params' dtype
    targets : ndarray, shape (batch, sizes[-1]), params' dtype
        Regression targets (:data:`MSE`); ignored for cross-entropy.
    labels : ndarray of int64, shape (batch,)
        Class labels (:data:`CROSS_ENTROPY`); ignored for MSE.
    sizes : ndarray of int64, shape (n_layers + 1,)
    activation : int
    loss_kind : int

    Returns
    -------
    float
    """
    x = np.ascontiguousarray(x)
    rational = params.dtype == np.float32
    return _loss_and_grad(
        params, grad, x, targets, labels, sizes, activation, loss_kind, rational
    )


def mlp_sgd_steps(params, x, targets, labels, indices, starts, lr, sizes, activation,
                  loss_kind):
    """Plain SGD steps on the dense network, one per mini-batch, updating ``params`` in place.

    Equivalent to ``for idx in batches: loss_and_grad on (x[idx], ·[idx]); params -= lr·grad``,
    with the mini-batches packed end to end: batch ``b`` is
    ``indices[starts[b]:starts[b + 1]]``.

    Parameters
    ----------
    params : ndarray, shape (n_params,), C-contiguous
    x : ndarray, shape (n_examples, sizes[0]), params' dtype
    targets, labels : as for :func:`mlp_loss_and_grad`, over all ``n_examples``
    indices : ndarray of int, shape (total,)
        Example indices of every mini-batch, in order.
    starts : ndarray of int64, shape (n_batches + 1,)
        Where each mini-batch begins in ``indices``; ``starts[-1] == total``.
    lr : float

    Returns
    -------
    losses : ndarray of float64, shape (n_batches,)
        The loss of each mini-batch before its step.
    """
    losses = np.empty(len(starts) - 1)
    rational = params.dtype == np.float32
    _sgd_steps(params, np.ascontiguousarray(x), targets, labels,
               np.asarray(indices, dtype=np.int64), np.asarray(starts, dtype=np.int64),
               params.dtype.type(lr), sizes, activation, loss_kind, rational, losses)
    return losses
