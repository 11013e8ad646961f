"""The image's pin files: the CPU image's (app/requirements.txt) and the CUDA image's
(app/requirements-cuda.txt) pin the same versions of what they share, and each has exactly one
build of each runtime library pair (both builds install the same module). Each resolves, with
binary wheels only, for its image's Python and platform (pip against PyPI, without downloading
the wheels: the CUDA set is gigabytes)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.server import APP_DIR

# (CPU build, CUDA build): each pair installs one module.
PAIRS = [("xgboost-cpu", "xgboost"), ("onnxruntime", "onnxruntime-gpu")]
PIN = re.compile(r"([A-Za-z0-9_.-]+)(?:\[[a-z,]+\])?==(\S+)")
# Each pin file's image: its Python, and the glibc of its Debian release (bookworm 2.36, trixie 2.41),
# which bounds the manylinux wheels it can take.
IMAGES = {"requirements.txt": ("3.11", 36), "requirements-cuda.txt": ("3.13", 41)}


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()  # PEP 503


def requirement_lines(name: str) -> list[str]:
    lines = (line.split("#", 1)[0].strip() for line in (APP_DIR / name).read_text().splitlines())
    return [line for line in lines if line]


def pins(name: str) -> dict[str, str]:
    return {normalized(match[1]): match[2]
            for line in requirement_lines(name) if (match := PIN.fullmatch(line))}


def platforms(glibc_minor: int) -> list[str]:
    """pip's --platform takes tags literally (it does not add the older manylinux levels a newer glibc
    runs), so name them all: manylinux_2_<glibc>..manylinux_2_5, and the legacy aliases."""
    return ([f"manylinux_2_{minor}_x86_64" for minor in range(glibc_minor, 4, -1)]
            + ["manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64"])


def resolve(name: str, report: Path) -> tuple[dict[str, str], str]:
    """What pip would install from the pin file for its image ({name: version}), and pip's log.

    --isolated: PyPI alone, not this machine's pip configuration (local wheel folders); the CA bundle
    PIP_CERT names is still passed (HTTPS may go through an inspecting proxy). fast-deps reads a
    wheel's metadata with HTTP range requests where the index serves no PEP 658 metadata file, so
    nothing is downloaded whole; where it does (pypi.org), pip uses that instead."""
    python, glibc = IMAGES[name]
    command = [sys.executable, "-m", "pip", "install", "--isolated", "--dry-run", "--ignore-installed",
               "--no-cache-dir", "--use-feature=fast-deps", "--only-binary=:all:", "--implementation", "cp",
               "--python-version", python, *(f"--platform={tag}" for tag in platforms(glibc)),
               "--verbose", "--report", str(report), "--requirement", str(APP_DIR / name)]
    if os.environ.get("PIP_CERT"):
        command += ["--cert", os.environ["PIP_CERT"]]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{name} does not resolve for Python {python}:\n{result.stderr[-3000:]}"
    installs = json.loads(report.read_text())["install"]
    return {normalized(item["metadata"]["name"]): item["metadata"]["version"] for item in installs}, result.stdout


@pytest.mark.parametrize("name", list(IMAGES))
def test_every_requirement_is_pinned_exactly(name: str) -> None:
    loose = [line for line in requirement_lines(name) if not PIN.fullmatch(line)]
    assert loose == [], f"{name}: pin these with ==: {loose}"


@pytest.mark.parametrize("name", list(IMAGES))
def test_the_pins_resolve_for_their_image_with_binary_wheels_only(name: str, tmp_path: Path) -> None:
    resolved, log = resolve(name, tmp_path / "report.json")
    pinned = pins(name)
    assert {package: resolved.get(package) for package in pinned} == pinned
    # Exactly one build of each pair in what is installed, not only in the file: no dependency brings the other.
    cpu = name == "requirements.txt"
    for cpu_build, cuda_build in PAIRS:
        wanted, unwanted = (cpu_build, cuda_build) if cpu else (cuda_build, cpu_build)
        assert wanted in resolved and unwanted not in resolved, (wanted, unwanted)
    nvidia = {package: version for package, version in resolved.items() if package.startswith("nvidia-")}
    if cpu:
        assert nvidia == {}
    else:
        # Every CUDA library the builds pull in is one the file pins, and none is a CUDA 12 build.
        assert {package: pinned.get(package) for package in nvidia} == nvidia
        assert not [package for package in nvidia if package.endswith("-cu12")]
    # Dependency information came from metadata, not from whole wheels (a `.whl.metadata` file is fine).
    whole = re.findall(r"Downloading (\S+\.whl) ", log)
    assert whole == [], f"pip downloaded whole wheels to resolve {name}: {whole}"


def test_each_pin_file_has_one_build_of_each_pair() -> None:
    cpu, cuda = pins("requirements.txt"), pins("requirements-cuda.txt")
    for cpu_build, cuda_build in PAIRS:
        assert cpu_build in cpu and cuda_build not in cpu
        assert cuda_build in cuda and cpu_build not in cuda


def test_the_cpu_and_cuda_images_pin_the_same_shared_versions() -> None:
    cpu, cuda = pins("requirements.txt"), pins("requirements-cuda.txt")
    builds = {build for pair in PAIRS for build in pair}
    shared = {name: version for name, version in cpu.items() if name not in builds}
    assert {name: cuda.get(name) for name in shared} == shared


def test_lightgbm_is_pinned_at_or_above_the_cve_fix() -> None:
    for name in ("requirements.txt", "requirements-cuda.txt"):
        version = tuple(int(part) for part in pins(name)["lightgbm"].split("."))
        assert version >= (4, 6, 0), f"{name}: lightgbm 4.6.0 fixes CVE-2024-43598"


def test_the_cuda_libraries_are_cuda_13_0() -> None:
    cuda = pins("requirements-cuda.txt")
    assert cuda["nvidia-cuda-runtime"].startswith("13.0.") and cuda["nvidia-cuda-nvrtc"].startswith("13.0.")
