"""The image's pin files: the CPU image's (app/requirements.txt) and the CUDA image's
(app/requirements-cuda.txt) pin the same versions of what they share, and each has exactly one
build of each runtime library pair (both builds install the same module)."""

from __future__ import annotations

import re

from tests.support.server import APP_DIR

# (CPU build, CUDA build): each pair installs one module.
PAIRS = [("xgboost-cpu", "xgboost"), ("onnxruntime", "onnxruntime-gpu")]


def pins(name: str) -> dict[str, str]:
    found = {}
    for line in (APP_DIR / name).read_text().splitlines():
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)(?:\[[a-z,]+\])?==(\S+)", line.strip())
        if match:
            found[match[1].lower()] = match[2]
    return found


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
