"""ccmnist: shortcut learning, interpretability and robustness on colored MNIST, in JAX."""

from setuptools import find_packages, setup

setup(
    name="ccmnist",
    version="0.1.0",
    description="Colored-MNIST shortcut-learning study in JAX/Flax",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["ccmnist", "ccmnist.*", "launch", "configs"]),
    install_requires=[
        "jax>=0.4.30",
        "flax>=0.8",
        "optax>=0.2",
        "numpy>=1.24",
        "ml_collections>=0.1.1",
        "absl-py>=1.0",
        "matplotlib>=3.7",
        "orbax-checkpoint>=0.5",
        "tensorboardX>=2.6",
    ],
    extras_require={
        "test": ["pytest>=7", "pytest-xdist>=3", "chex>=0.1.86", "ruff>=0.4"],
        "tfds": ["tensorflow-datasets>=4.9", "tensorflow-cpu>=2.15"],
    },
)
