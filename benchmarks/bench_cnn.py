"""Speed of the CNN kernels and of one Omniglot inner training step, against PyTorch.

    python benchmarks/bench_cnn.py [--threads 1] [--repeats 200] [--keep-freed-memory]

Prints, in one run:

(a) the machine's practical ceiling: a 2048² float32 matrix product (NumPy/OpenBLAS), GFLOP/s;
(b) each convolution of the Omniglot CNN at batch 10 and 50: forward and backward GFLOP/s of
    the Numba kernels and of the NumPy references (backward = weight and input gradients);
(c) one full inner training step of the Omniglot CNN (forward, backward, Adam with β1 = 0;
    batch 10 and 50, 5 classes) in minireptile and in PyTorch (same architecture, TF-style
    ``same`` padding via ``F.pad``, same initial weights and data), medians and the ratio;
(d) the peak resident memory of each side of (c) (``ru_maxrss`` of its own process);
(e) batch norm with the fused ReLU against batch norm followed by a separate ReLU layer.

Every measurement runs in a fresh subprocess whose thread count is pinned before any library
loads: ``OMP/OPENBLAS/MKL/NUMBA_NUM_THREADS`` set to ``--threads`` and, on the PyTorch side,
``torch.set_num_threads(--threads)``. The minireptile kernels themselves are single-threaded
(no ``prange``); ``--threads`` governs the BLAS calls inside them. The step comparison
alternates the two sides over several rounds so that background load hits both alike.

On this kind of virtual machine a first touch of a fresh page costs microseconds, and glibc
returns freed multi-megabyte arrays to the OS, so every step page-faults its activations
again; ``--keep-freed-memory`` sets glibc's tunables for *both* sides to show that cost.
"""

import argparse
import json
import os
import subprocess
import sys

from _timing import median_seconds

THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                    "NUMBA_NUM_THREADS")
STEP_BATCHES = (10, 50)
# glibc tunables that keep freed memory in the heap instead of returning it to the OS, so that
# re-allocating a multi-megabyte activation does not page-fault again (--keep-freed-memory).
KEEP_FREED_MEMORY = {
    "MALLOC_MMAP_THRESHOLD_": str(256 << 20),
    "MALLOC_TRIM_THRESHOLD_": str(1 << 30),
    "MALLOC_TOP_PAD_": str(64 << 20),
}


def step_repeats(args, batch):
    return args.repeats if batch <= 10 else max(20, args.repeats // 5)


def peak_rss_mib():
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


# ---------------------------------------------------------------------------------------------
# Workers (each runs in its own process)


def worker_ceiling(args):
    import numpy as np

    n = 2048
    a = np.random.default_rng(0).standard_normal((n, n)).astype(np.float32)
    seconds = median_seconds(lambda: a @ a, 10, warmup=2)
    return {"gflops": 2 * n**3 / seconds / 1e9}


def omniglot_conv_shapes(batch):
    """``(x shape, kernel shape)`` of the four Omniglot convolutions."""
    shapes, size, cin = [], 28, 1
    for _ in range(4):
        shapes.append(((batch, size, size, cin), (3, 3, cin, 64)))
        size, cin = -(-size // 2), 64
    return shapes


def worker_layers(args):
    import numpy as np
    from minireptile.kernels import conv

    rng = np.random.default_rng(0)
    rows = []
    for batch in STEP_BATCHES:
        for index, (x_shape, w_shape) in enumerate(omniglot_conv_shapes(batch)):
            x = rng.standard_normal(x_shape).astype(np.float32)
            w = rng.standard_normal(w_shape).astype(np.float32)
            b = np.zeros(w_shape[3], np.float32)
            y, cache = conv.conv2d_forward(x, w, b, 2, "same")
            dy = rng.standard_normal(y.shape).astype(np.float32)
            flops = 2 * y.shape[0] * y.shape[1] * y.shape[2] * np.prod(w_shape)
            few = max(3, args.repeats // 20)
            timings = {
                "numba_fwd": median_seconds(lambda: conv.conv2d_forward(x, w, b, 2, "same"),
                                            args.repeats),
                "numba_bwd": median_seconds(lambda: conv.conv2d_backward(w, cache, dy),
                                            args.repeats),
                "numpy_fwd": median_seconds(
                    lambda: conv.conv2d_forward_reference(x, w, b, 2, "same"), few, warmup=1),
                "numpy_bwd": median_seconds(
                    lambda: conv.conv2d_backward_reference(x, w, dy, 2, "same"), few, warmup=1),
            }
            rows.append({
                "batch": batch, "layer": index, "x": x_shape, "y": y.shape,
                **{k: (flops if k.endswith("fwd") else 2 * flops) / v / 1e9
                   for k, v in timings.items()},
            })
    return {"rows": rows}


def step_data(batch):
    import numpy as np

    rng = np.random.default_rng(1)
    x = rng.random((batch, 28, 28), dtype=np.float32)
    y = rng.integers(0, 5, batch)
    return x, y


def initial_params():
    import numpy as np

    from minireptile.models.cnn import omniglot_cnn

    model = omniglot_cnn(5)
    return model, model.init_params(np.random.default_rng(0))


def worker_minireptile_step(args):
    import numpy as np

    from minireptile.algorithms.optim import Adam

    model, phi = initial_params()
    result = {}
    for batch in STEP_BATCHES:
        x, y = step_data(batch)
        params = phi.copy()
        grad = np.empty_like(params)  # reused across steps, as the few-shot inner loop does
        opt = Adam(1e-3, beta1=0.0)

        def step():
            model.loss_and_grad(params, x, y, out=grad)
            opt.step(params, grad)

        result[str(batch)] = median_seconds(step, step_repeats(args, batch), warmup=10)
    result["rss_mib"] = peak_rss_mib()
    return result


def worker_torch_step(args):
    import numpy as np
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(args.threads)

    from _torch_omniglot import OmniglotNet

    # The same initial weights as the minireptile side (read from its flat vector).
    flat = np.load(args.weights)
    spans = json.loads(args.layout)

    def tensor(name):
        start, stop = spans[name]
        return torch.tensor(flat[start:stop].reshape(spans[name + "_shape"]))

    net = OmniglotNet()
    with torch.no_grad():
        for i in range(4):
            net.convs[i].weight.copy_(tensor(f"conv2d{i}.weight").permute(3, 2, 0, 1))
            net.convs[i].bias.copy_(tensor(f"conv2d{i}.bias"))
            net.norms[i].weight.copy_(tensor(f"batchnorm2d{i}.gamma"))
            net.norms[i].bias.copy_(tensor(f"batchnorm2d{i}.beta"))
        net.dense.weight.copy_(tensor("linear0.weight").T)
        net.dense.bias.copy_(tensor("linear0.bias"))
    start_state = {k: v.clone() for k, v in net.state_dict().items()}
    result = {}
    for batch in STEP_BATCHES:
        net.load_state_dict(start_state)
        x_np, y_np = step_data(batch)
        x, y = torch.tensor(x_np), torch.tensor(y_np)
        opt = torch.optim.Adam(net.parameters(), lr=1e-3, betas=(0.0, 0.999), eps=1e-8)

        def step():
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(net(x), y).backward()
            opt.step()

        result[str(batch)] = median_seconds(step, step_repeats(args, batch), warmup=10)
    result["rss_mib"] = peak_rss_mib()
    return result


def worker_fusion(args):
    import numpy as np

    from minireptile.nn import BatchNorm2d, ReLU

    rng = np.random.default_rng(0)
    params = {"gamma": np.ones(64, np.float32), "beta": np.zeros(64, np.float32)}
    grads = {"gamma": np.empty(64, np.float32), "beta": np.empty(64, np.float32)}
    result = {}
    for batch, size in ((10, 14), (50, 14)):
        x = rng.standard_normal((batch, size, size, 64)).astype(np.float32)
        dy = rng.standard_normal(x.shape).astype(np.float32)
        fused, plain, relu = BatchNorm2d(64, relu=True), BatchNorm2d(64), ReLU()

        def run_fused():
            y, c = fused.forward(params, x)
            fused.backward(params, c, dy, grads)

        def run_plain():
            z, c = plain.forward(params, x)
            y, rc = relu.forward({}, z)
            plain.backward(params, c, relu.backward({}, rc, dy, {}), grads)

        result[f"{batch}x{size}x{size}x64"] = {
            "fused": median_seconds(run_fused, args.repeats),
            "separate": median_seconds(run_plain, args.repeats),
        }
    return result


WORKERS = {
    "ceiling": worker_ceiling,
    "layers": worker_layers,
    "minireptile_step": worker_minireptile_step,
    "torch_step": worker_torch_step,
    "fusion": worker_fusion,
}


# ---------------------------------------------------------------------------------------------
# Driver


def run_worker(name, args, extra=()):
    env = dict(os.environ, **{v: str(args.threads) for v in THREAD_VARIABLES})
    if args.keep_freed_memory:
        env.update(KEEP_FREED_MEMORY)
    cmd = [sys.executable, __file__, "--worker", name, "--threads", str(args.threads),
           "--repeats", str(args.repeats), *extra]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"worker {name} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def torch_available():
    probe = subprocess.run([sys.executable, "-c", "import torch; print(torch.__version__)"],
                           capture_output=True, text=True)
    return probe.stdout.strip() if probe.returncode == 0 else None


def write_initial_weights(path):
    import numpy as np

    model, phi = initial_params()
    np.save(path, phi)
    names = {}
    for name, offset, shape in zip(model.layout.names, model.layout.offsets, model.layout.shapes):
        size = int(np.prod(shape))
        names[name] = [offset, offset + size]
        names[name + "_shape"] = list(shape)
    return names


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5,
                        help="alternating rounds of the step comparison")
    parser.add_argument("--keep-freed-memory", action="store_true",
                        help="set glibc malloc tunables (both sides) so freed activations are "
                        "reused without page faults")
    parser.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    parser.add_argument("--weights", help=argparse.SUPPRESS)
    parser.add_argument("--layout", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        print(json.dumps(WORKERS[args.worker](args)))
        return

    print(f"load average at start: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    print(f"threads: {args.threads} (BLAS, OpenMP, Numba and torch.set_num_threads); "
          f"medians over {args.repeats} repeats; glibc malloc "
          f"{'tuned to keep freed memory' if args.keep_freed_memory else 'defaults'}")
    ceiling = run_worker("ceiling", args)["gflops"]
    print(f"\n(a) ceiling: 2048x2048 float32 matrix product  {ceiling:7.1f} GFLOP/s")

    print("\n(b) Omniglot convolutions (3x3, 64 filters, stride 2, same), GFLOP/s "
          "(backward = weight + input gradients, 2x the forward FLOPs)")
    print(f"    {'batch':>5} {'layer':>5} {'input':>18} {'output':>16} "
          f"{'numba fwd':>10} {'numba bwd':>10} {'numpy fwd':>10} {'numpy bwd':>10}")
    for r in run_worker("layers", args)["rows"]:
        print(f"    {r['batch']:>5} {r['layer']:>5} {str(tuple(r['x'])):>18} "
              f"{str(tuple(r['y'])):>16} {r['numba_fwd']:>10.1f} {r['numba_bwd']:>10.1f} "
              f"{r['numpy_fwd']:>10.1f} {r['numpy_bwd']:>10.1f}")

    print(f"\n(c) one inner training step of the Omniglot CNN (forward, backward, Adam "
          f"beta1=0; 5 classes), median of {args.rounds} alternating rounds")
    version = torch_available()
    import tempfile

    import numpy as np

    with tempfile.TemporaryDirectory() as tmp:
        weights = os.path.join(tmp, "phi.npy")
        spans = write_initial_weights(weights)
        layout = json.dumps(spans)
        ours, theirs = [], []
        for _ in range(args.rounds):
            ours.append(run_worker("minireptile_step", args))
            if version:
                theirs.append(run_worker("torch_step", args,
                                         ["--weights", weights, "--layout", layout]))
    for batch in STEP_BATCHES:
        mine = float(np.median([r[str(batch)] for r in ours]))
        line = f"    batch {batch:>3}: minireptile {mine * 1e3:7.2f} ms"
        if theirs:
            torch_ms = float(np.median([r[str(batch)] for r in theirs]))
            line += f"   PyTorch {version} {torch_ms * 1e3:7.2f} ms   ratio {torch_ms / mine:5.2f}x"
        print(line)
    if not theirs:
        print("    PyTorch is not installed: skipped the PyTorch side of (c) and (d)")

    print("\n(d) peak resident memory of the step processes")
    print(f"    minireptile {max(r['rss_mib'] for r in ours):7.1f} MiB")
    if theirs:
        print(f"    PyTorch     {max(r['rss_mib'] for r in theirs):7.1f} MiB")

    print("\n(e) batch norm + ReLU, forward and backward, float32")
    for shape, t in run_worker("fusion", args).items():
        print(f"    {shape:>14}: fused {t['fused'] * 1e3:6.3f} ms   separate ReLU layer "
              f"{t['separate'] * 1e3:6.3f} ms   ratio {t['separate'] / t['fused']:4.2f}x")
    print(f"\nload average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
