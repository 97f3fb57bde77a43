"""Install minireptile; the top-level ``kernels/`` folder becomes ``minireptile.kernels``."""

from setuptools import find_packages, setup

setup(
    name="minireptile",
    version="0.1.0",
    description=(
        "Reptile meta-learning from scratch in NumPy, with handwritten backprop "
        "and Numba kernels"
    ),
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.10",
    packages=find_packages(include=["minireptile", "minireptile.*"]) + ["minireptile.kernels"],
    package_dir={"minireptile.kernels": "kernels"},
    package_data={"minireptile.demo": ["omniglot_5way.npz", "static/*"]},
    install_requires=[
        "numpy>=1.24",
        "numba>=0.58",
        "scipy>=1.10",
        "pillow>=9.0",
        "tqdm>=4.60",
        "threadpoolctl>=3.1",
    ],
    extras_require={
        "test": ["pytest>=7", "hypothesis>=6.80"],
        "plot": ["matplotlib>=3.6"],
        "browser": ["selenium>=4.10"],
        "cluster": ["dask[distributed]>=2023.1"],
        # The tests' cross-checks against PyTorch (the CNNs, the MLP's initialisation,
        # second-order MAML); without it they are skipped.
        "peers": ["torch==2.13.0"],
    },
    entry_points={"console_scripts": ["minireptile = minireptile.cli:main"]},
)
