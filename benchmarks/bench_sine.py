"""Sine-wave Reptile: minireptile against the same loop in PyTorch, in one run.

    python benchmarks/bench_sine.py                 # speed: 3,000 iterations, medians of 3
    python benchmarks/bench_sine.py --quality       # quality: 30,000 iterations, 1,000 tasks

Speed: wall time of meta-training (same seed, same hyperparameters, same task stream), the
median over ``--repeats`` runs of each side, and the ratio PyTorch / minireptile. Both run on
``--threads`` threads (PyTorch's intra-op threads; minireptile's kernels are single-threaded
at these sizes and call no BLAS).

Quality: both meta-train for the full schedule and are fine-tuned on the same held-out tasks;
the mean squared error after 0, 1, 8 and 32 steps is printed with 95% intervals.
"""

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _torch_sine  # noqa: E402

from minireptile.problems import sine  # noqa: E402


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=3000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quality", action="store_true",
                        help="full 30,000-iteration runs and held-out evaluation instead")
    parser.add_argument("--eval-tasks", type=int, default=1000)
    parser.add_argument("--eval-seed", type=int, default=1000)
    args = parser.parse_args()
    if args.quality and args.iterations == 3000:
        args.iterations = 30000
    torch = _torch_sine.import_torch()
    if torch is not None:
        torch.set_num_threads(args.threads)
        print(f"PyTorch {torch.__version__}, {torch.get_num_threads()} thread(s)")
    config = sine.SineConfig(iterations=args.iterations)
    print(f"sine Reptile, {config.iterations} iterations, inner batch {config.inner_batch}, "
          f"inner lr {config.inner_lr}, meta step {config.meta_step} -> {config.meta_step_final}")

    sine.train(sine.SineConfig(iterations=5))  # load compiled kernels before timing
    if args.quality:
        quality(torch, config, args)
    else:
        speed(torch, config, args.repeats)


def speed(torch, config, repeats):
    ours = [timed(lambda: sine.train(config))[0] for _ in range(repeats)]
    ours_med = statistics.median(ours)
    print(f"minireptile: median {ours_med:.2f} s over {repeats} runs "
          f"({1e6 * ours_med / config.iterations:.0f} µs per iteration); "
          f"runs: {', '.join(f'{t:.2f}' for t in ours)}")
    if torch is None:
        return
    theirs = [timed(lambda: _torch_sine.train(torch, config))[0] for _ in range(repeats)]
    theirs_med = statistics.median(theirs)
    print(f"PyTorch:     median {theirs_med:.2f} s over {repeats} runs "
          f"({1e6 * theirs_med / config.iterations:.0f} µs per iteration); "
          f"runs: {', '.join(f'{t:.2f}' for t in theirs)}")
    print(f"ratio PyTorch / minireptile: {theirs_med / ours_med:.1f}x")


def quality(torch, config, args):
    tasks = sine.heldout_tasks(args.eval_tasks, args.eval_seed)
    seconds, (phi, _) = timed(lambda: sine.train(config))
    model = sine.sine_model()
    report("minireptile", seconds, sine.evaluate(model, phi, tasks, config.inner_lr))
    task, idx = sine.plot_task(args.eval_seed)
    curve = sine.finetune_curve(model, phi, task, idx, config.inner_lr, (32,))
    print(f"minireptile loss on plotted curve after 32 steps: {curve[32][0]:.3f}")
    if torch is None:
        return
    seconds, net = timed(lambda: _torch_sine.train(torch, config))
    report("PyTorch", seconds, _torch_sine.evaluate(torch, net, tasks, config.inner_lr))
    curve = _torch_sine.evaluate(torch, net, [(task, idx)], config.inner_lr, (32,))
    print(f"PyTorch loss on plotted curve after 32 steps: {curve[32][0]:.3f}")


def report(name, seconds, results):
    print(f"{name}: trained in {seconds:.1f} s; held-out mean squared error (95% interval):")
    for step, (mean, half) in results.items():
        print(f"  after {step:2d} steps: {mean:.4f} ± {half:.4f}")


if __name__ == "__main__":
    main()
