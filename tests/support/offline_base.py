"""A Debian base image with Python, built offline for the image builds (no registry is reachable).

debootstrap makes a minimal Debian root filesystem (python3, python3-venv, ca-certificates) from
the Debian mirror; the host's CA bundle replaces the one inside (HTTPS to PyPI goes through an
inspecting proxy whose CA only the host trusts); the package caches and lists are emptied, as in
the official slim images; and the tree is imported into Docker. The images' Dockerfiles take it as
BASE_IMAGE: bookworm (Python 3.11) for the CPU image, trixie (Python 3.13) for the CUDA image.
Real users build on the Dockerfiles' defaults, the official python:*-slim-* images.

    python -m tests.support.offline_base trixie model-serving-test/trixie-python:offline
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

# The Debian release each image is built on, and the tag its offline base gets.
BASES = {"bookworm": "model-serving-test/bookworm-python:offline",
         "trixie": "model-serving-test/trixie-python:offline"}
DEBOOTSTRAP_TIMEOUT_S = 900


class OfflineBaseError(RuntimeError):
    pass


def image_exists(image: str) -> bool:
    return subprocess.run(["docker", "image", "inspect", image], capture_output=True).returncode == 0


def build_offline_base(suite: str, image: str | None = None) -> str:
    """The tag of a Debian `suite` base image with Python, built unless Docker already has it."""
    image = image or BASES[suite]
    if image_exists(image):
        return image
    if shutil.which("debootstrap") is None:
        raise OfflineBaseError("building the offline base image needs debootstrap (apt-get install debootstrap)")
    with tempfile.TemporaryDirectory(prefix=f"{suite}-") as directory:
        root = Path(directory) / "root"
        result = subprocess.run(["debootstrap", "--variant=minbase", "--include=python3,python3-venv,ca-certificates",
                                 suite, str(root)], capture_output=True, text=True, timeout=DEBOOTSTRAP_TIMEOUT_S)
        if result.returncode != 0:
            raise OfflineBaseError(f"debootstrap {suite} failed: {(result.stdout + result.stderr)[-2000:]}")
        shutil.copy("/etc/ssl/certs/ca-certificates.crt", root / "etc/ssl/certs/ca-certificates.crt")
        # Like the official slim images: no package caches or lists in the base.
        for cache in ("var/cache/apt", "var/lib/apt/lists"):
            shutil.rmtree(root / cache)
            (root / cache).mkdir()
        tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
        imported = subprocess.run(["docker", "import", "-", image], stdin=tar.stdout, capture_output=True, text=True)
        if tar.wait() != 0 or imported.returncode != 0:
            raise OfflineBaseError(f"importing {suite} into Docker as {image} failed: {imported.stderr[-2000:]}")
    return image


def main(argv: list[str]) -> int:
    if len(argv) not in (1, 2) or argv[0] not in BASES:
        print(f"usage: python -m tests.support.offline_base {{{','.join(BASES)}}} [IMAGE]", file=sys.stderr)
        return 2
    try:
        print(build_offline_base(argv[0], argv[1] if len(argv) == 2 else None))
    except OfflineBaseError as error:
        print(error, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
