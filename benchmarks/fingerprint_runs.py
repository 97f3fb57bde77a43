"""Fingerprints of fixed-seed runs, to show that a change of the code leaves results unchanged.

    python benchmarks/fingerprint_runs.py > before.txt
    (change the code)
    python benchmarks/fingerprint_runs.py > after.txt
    diff before.txt after.txt

Each line names one run of the command line — sine with Reptile, a meta-batch with outer
Adam, first- and second-order MAML; Omniglot with Reptile, outer Adam over a meta-batch,
FOMAML with a held-out tail, second-order MAML, a gradient combination, weight decay with
within-alphabet tasks and augmentation, and an evaluation of a finished run — with a SHA-1
of every array it saved (Φ, optimiser states) and of its printed results, times and paths
left out. Omniglot runs read ``images_background_small1.zip`` from ``../shared/data/omniglot``
and are skipped, with a line saying so, when it is absent. Results are bit-identical only on
the same machine and libraries.
"""

import hashlib
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

DATA = (Path(__file__).resolve().parents[1].parent / "shared" / "data" / "omniglot"
        / "images_background_small1.zip")
SINE = {
    "sine reptile": ["--iterations", "300", "--eval-tasks", "20"],
    "sine meta-batch adam": ["--iterations", "100", "--meta-batch", "3", "--outer", "adam",
                             "--eval-tasks", "10"],
    "sine foml": ["--iterations", "100", "--foml", "--eval-tasks", "10"],
    "sine maml": ["--iterations", "50", "--maml", "--eval-tasks", "10"],
}
SMALL = ["--classes", "3", "--shots", "1", "--inner-iters", "3", "--inner-batch", "3",
         "--meta-iters", "12", "--eval-interval", "4", "--eval-samples", "6", "--eval-iters",
         "3", "--checkpoint-interval", "5"]
SGD = ["--sgd", "--learning-rate", "0.01", "--meta-batch", "2"]
OMNIGLOT = {
    "omniglot reptile": [],
    "omniglot adam meta-batch": ["--outer", "adam", "--meta-batch", "2", "--transductive"],
    "omniglot foml tail": ["--foml", "--foml-tail", "1", "--train-shots", "3"],
    "omniglot maml": ["--maml", *SGD],
    "omniglot combination": ["--combination", "(g1+g2)/2", *SGD],
    "omniglot weight decay, within alphabet, augment": ["--weight-decay", "0.99",
                                                        "--within-alphabet", "--augment"],
}
VOLATILE = re.compile(r"[0-9.]+ ?(s|ms|min)\b|/\S+")  # durations and paths


def minireptile(*args):
    """Run the command line; its output (times and paths removed) and exit status."""
    done = subprocess.run([sys.executable, "-m", "minireptile", *args, "--no-progress",
                           "--workers", "1"], capture_output=True, text=True)
    return VOLATILE.sub("", done.stdout + done.stderr), done.returncode


def digest(data):
    return hashlib.sha1(data).hexdigest()[:12]


def arrays_digest(path):
    with np.load(path, allow_pickle=False) as z:
        return " ".join(f"{k}={digest(z[k].tobytes())}" for k in sorted(z.files)
                        if not k.startswith("__"))


def main():
    with tempfile.TemporaryDirectory() as tmp:
        for name, args in SINE.items():
            saved = Path(tmp, name.replace(" ", "_") + ".npz")
            out, status = minireptile("sine", *args, "--save", str(saved))
            print(f"{name}: exit {status} output={digest(out.encode())} {arrays_digest(saved)}")
        if not DATA.exists():
            print(f"omniglot runs skipped: {DATA} not found")
            return
        common = ["--data", str(DATA), "--num-train", "100", "--cache-dir",
                  str(Path(tmp, "cache")), *SMALL]
        for name, args in OMNIGLOT.items():
            run = Path(tmp, name.replace(" ", "_").replace(",", ""))
            out, status = minireptile("train", "omniglot", *common, *args, "--checkpoint",
                                      str(run))
            metrics = re.sub(r'"seconds": [0-9.]+', "", (run / "metrics.jsonl").read_text())
            print(f"{name}: exit {status} output={digest(out.encode())} "
                  f"metrics={digest(metrics.encode())} "
                  f"{arrays_digest(run / 'checkpoint.npz')}")
        out, status = minireptile("eval", "omniglot", "--checkpoint",
                                  str(Path(tmp, "omniglot_reptile")), "--eval-samples", "6",
                                  "--eval-iters", "3", "--cache-dir", str(Path(tmp, "cache")))
        print(f"omniglot eval: exit {status} output={digest(out.encode())}")


if __name__ == "__main__":
    main()
