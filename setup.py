"""Install every part under the one import name ``captionbot``.

The repository keeps the folders its readers look for at the top (``bot/``, ``inference/``, ``export/``,
``training/``), but installs them as ``captionbot.bot``, ``captionbot.inference``, ... so that a host bot with its
own ``bot`` package can load ours (``load_extension("captionbot.bot.captions")``) without a clash. A folder that is
absent (the Docker images copy only what they run) is simply not installed. Everything else is in pyproject.toml.
"""

from pathlib import Path

from setuptools import find_packages, setup

PARTS = ("bot", "inference", "export", "training")

package_dir = {"captionbot": "captionbot"}
packages = find_packages(include=["captionbot", "captionbot.*"])
for part in PARTS:
    if (Path(__file__).parent / part / "__init__.py").is_file():
        package_dir[f"captionbot.{part}"] = part
        packages += [f"captionbot.{part}", *(f"captionbot.{part}.{sub}" for sub in find_packages(part))]

setup(packages=packages, package_dir=package_dir)
