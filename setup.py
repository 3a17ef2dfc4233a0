from setuptools import find_packages, setup

with open("requirements.txt") as f:
    requirements = [line.strip() for line in f if line.strip() and not line.startswith("#")]

setup(
    name="mmrl",
    version="0.1.0",
    description="MMRL / MMRL++: multi-modal representation learning for CLIP, on a compact Dassl engine",
    license="MIT",
    python_requires=">=3.10",
    packages=find_packages(include=["clip*", "dassl*", "trainers*", "datasets*", "tools*"]),
    package_data={"clip": ["bpe_simple_vocab_16e6.txt.gz"], "tools": ["paper_numbers.csv"]},
    include_package_data=True,
    install_requires=requirements,
    extras_require={
        # Optional extras, each imported only where it is used.
        "data": ["scipy"],  # MATLAB label files of StanfordCars / OxfordFlowers (split rebuild)
        "plots": ["matplotlib"],  # few-shot curves of tools.report
        "linear_probe": ["scikit-learn"],  # the linear-probe CLIP baseline
        "slurm": ["submitit"],  # grids of runs on SLURM
        "parity": ["tensorboard", "tabulate", "wilds", "scikit-learn"],  # upstream Dassl's imports (tools.parity)
        "test": ["pytest", "ruff", "scipy", "matplotlib", "scikit-learn", "submitit"],
    },
)
