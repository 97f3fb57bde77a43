"""What affine augmentation costs: the Numba warp against NumPy and SciPy, and per meta-iteration.

    python benchmarks/bench_augment.py [--repeats 50] [--rounds 5] [--iterations 5]

(a) Distorting the images of one training task (20 classes × 5 or 10 shots, 28×28):
    minireptile's Numba kernel, its NumPy reference and ``scipy.ndimage.affine_transform``
    (order 0, i.e. nearest neighbour, one call per image: the well-kept library way), the
    same distortions for all three; medians over ``--repeats`` calls, ratios against the
    Numba kernel. Then the same for bilinear resampling (``--augment-interpolation
    bilinear``; SciPy's order 1).
(b) One meta-iteration of the 20-way 1-shot within-alphabet recipe (meta-batch 5, 5 inner
    Adam steps of 20 images, 5 training shots) with and without ``--augment``, on the real
    small1 alphabets when ``../shared/data/omniglot`` holds them: medians over ``--rounds``
    alternating rounds of ``--iterations`` iterations, one thread.
"""

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
from _timing import median_seconds

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "omniglot"
SMALL1 = ["Balinese", "Early_Aramaic", "Greek", "Korean", "Latin"]


def scipy_warp(images, inverse, shift, fill, order=0):
    """The same maps through scipy.ndimage, one image at a time (order 0: nearest, 1:
    bilinear)."""
    from scipy.ndimage import affine_transform

    h, w = images.shape[1:]
    centre = np.array([(h - 1) / 2, (w - 1) / 2])
    out = np.empty_like(images)
    for i, image in enumerate(images):
        # input = M (output − centre − t) + centre = M·output + (centre − M (centre + t))
        offset = centre - inverse[i] @ (centre + shift[i])
        out[i] = affine_transform(image, inverse[i], offset=offset, order=order,
                                  mode="constant", cval=fill)
    return out


def bench_warps(repeats):
    from minireptile.kernels.affine import (affine_bilinear, affine_bilinear_reference,
                                            affine_nearest, affine_nearest_reference)

    from minireptile.problems.augment import AffineAugmentation

    print("(a) distorting one training task's images (28x28), median of "
          f"{repeats} calls")
    augmentation = AffineAugmentation()
    rng = np.random.default_rng(0)
    for count in (100, 200):
        images = (rng.random((count, 28, 28)) > 0.8).astype(np.float32)
        inverse, shift = augmentation.sample(count, rng)
        out = np.empty_like(images)
        affine_nearest(images, inverse, shift, 1.0, out)  # compile outside the timing
        agree = np.mean(scipy_warp(images, inverse, shift, 1.0) == out)
        numba_s = median_seconds(lambda: affine_nearest(images, inverse, shift, 1.0, out),
                                 repeats)
        whole_s = median_seconds(lambda: augmentation.apply(images, rng), repeats)
        numpy_s = median_seconds(lambda: affine_nearest_reference(images, inverse, shift, 1.0),
                                 max(3, repeats // 5))
        scipy_s = median_seconds(lambda: scipy_warp(images, inverse, shift, 1.0),
                                 max(3, repeats // 5))
        print(f"    {count} images: numba {numba_s * 1e6:8.1f} µs   with drawing the maps "
              f"{whole_s * 1e6:8.1f} µs   numpy {numpy_s * 1e6:8.1f} µs "
              f"({numpy_s / numba_s:5.1f}x)   scipy.ndimage {scipy_s * 1e6:8.1f} µs "
              f"({scipy_s / numba_s:5.1f}x); scipy agrees on {agree:.2%} of pixels")
        affine_bilinear(images, inverse, shift, 1.0, out)
        # SciPy treats neighbours outside the image differently at the border, so compare
        # values to a tolerance.
        agree = np.mean(np.abs(scipy_warp(images, inverse, shift, 1.0, order=1) - out) < 1e-5)
        bilinear_s = median_seconds(lambda: affine_bilinear(images, inverse, shift, 1.0, out),
                                    repeats)
        numpy_s = median_seconds(lambda: affine_bilinear_reference(images, inverse, shift, 1.0),
                                 max(3, repeats // 5))
        scipy_s = median_seconds(lambda: scipy_warp(images, inverse, shift, 1.0, order=1),
                                 max(3, repeats // 5))
        print(f"    {count} images, bilinear: numba {bilinear_s * 1e6:8.1f} µs "
              f"({bilinear_s / numba_s:4.1f}x nearest)   numpy {numpy_s * 1e6:8.1f} µs "
              f"({numpy_s / bilinear_s:5.1f}x)   scipy.ndimage {scipy_s * 1e6:8.1f} µs "
              f"({scipy_s / bilinear_s:5.1f}x); scipy agrees on {agree:.2%} of pixels")


def bench_meta_iteration(rounds, iterations):
    from minireptile.data.alphabets import AlphabetClassSet
    from minireptile.data.omniglot import omniglot_splits
    from minireptile.models.cnn import omniglot_cnn
    from minireptile.runs.config import TrainConfig, make_learner

    sources = [DATA / "images_background_small1.zip"]
    if not sources[0].is_file():
        print("(b) skipped: images_background_small1.zip not found in ../shared/data/omniglot")
        return
    train, _ = omniglot_splits(sources, np.random.default_rng(0), train_alphabets=SMALL1,
                               progress=False)
    classes = AlphabetClassSet(train, 20, "training")
    model = omniglot_cnn(20)
    learners = {}
    for augment in (False, True):
        config = TrainConfig(classes=20, shots=1, train_shots=5, inner_batch=20, inner_iters=5,
                             meta_batch=5, learning_rate=0.001, within_alphabet=True,
                             augment=augment)
        learners[augment] = make_learner(model, model.init_params(np.random.default_rng(0)),
                                         config)
    times = {False: [], True: []}
    for augment, learner in learners.items():  # warm-up: compile every kernel
        learner.train_step(classes, 20, 5, 5, 1.0, np.random.default_rng(0))
    for r in range(rounds):
        for augment, learner in learners.items():
            rng = np.random.default_rng(r)
            start = time.perf_counter()
            for _ in range(iterations):
                learner.train_step(classes, 20, 5, 5, 0.1, rng)
            times[augment].append((time.perf_counter() - start) / iterations)
    plain, augmented = statistics.median(times[False]), statistics.median(times[True])
    print(f"(b) one meta-iteration (20-way, 5 shots, meta-batch 5, 5 inner steps of 20), "
          f"median of {rounds} rounds of {iterations}")
    print(f"    without augmentation {plain * 1e3:8.1f} ms   with {augmented * 1e3:8.1f} ms   "
          f"difference {100 * (augmented - plain) / plain:+.1f}%  (5 tasks x 100 images "
          f"distorted per iteration)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--iterations", type=int, default=5)
    args = parser.parse_args()
    from minireptile.parallel.threads import set_threads

    set_threads(1)
    bench_warps(args.repeats)
    bench_meta_iteration(args.rounds, args.iterations)


if __name__ == "__main__":
    main()
