"""Package discovery (the metadata is in pyproject.toml).

Each top-level folder is a sub-package of the `libra` namespace (flows/ is `libra.flows`, ...), a layout
pyproject's static `packages` list cannot find by itself: a sub-package added to that list by hand was
silently left out of the wheel when someone forgot it. Here every folder with an `__init__.py` under
these roots is found; tests/flows/test_wheel.py builds the wheel and checks it holds every module and
data file of the tree.
"""

from setuptools import find_packages, setup

ROOTS = ("flows", "tasks", "warehouse", "prompts", "configs", "stubllm")

packages = [f"libra.{root}" for root in ROOTS]
packages += [f"libra.{root}.{sub}" for root in ROOTS for sub in find_packages(where=root)]

setup(packages=packages, package_dir={f"libra.{root}": root for root in ROOTS})
