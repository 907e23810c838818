"""Official SAM checkpoints: download once, verify sha256, never keep a bad file."""

from __future__ import annotations

import hashlib
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from precompute.types import SamaugError

BASE_URL = "https://dl.fbaipublicfiles.com/segment_anything"
# name -> (file name, sha256), as published by Meta (the same hashes micro-sam pins).
CHECKPOINTS = {
    "vit_b": (
        "sam_vit_b_01ec64.pth",
        "ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912",
    ),
    "vit_l": (
        "sam_vit_l_0b3195.pth",
        "3adcc4315b642a4d2101128f611684e8734c41232a17c648ed1693702a49a622",
    ),
    "vit_h": (
        "sam_vit_h_4b8939.pth",
        "a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e",
    ),
}


def sha256_file(path: str | Path, block: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(block), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fetch(
    url: str,
    dest: Path,
    sha256: str,
    on_bytes: Callable[[int, int], None] | None = None,
) -> Path:
    """Download url to dest unless a file with the right sha256 is already there.

    Writes to ``dest.part`` and renames only after the hash matched; a mismatch deletes
    the partial file and raises SamaugError naming both hashes.
    """
    if dest.exists():
        if sha256_file(dest) == sha256:
            return dest
        raise SamaugError(
            f"{dest} exists but its sha256 is not {sha256}; delete it and run `make weights` again"
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(part, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0)
            done = 0
            while chunk := response.read(1 << 20):
                out.write(chunk)
                digest.update(chunk)
                done += len(chunk)
                if on_bytes:
                    on_bytes(done, total)
    except (urllib.error.URLError, OSError) as err:
        part.unlink(missing_ok=True)
        raise SamaugError(f"cannot download {url}: {err}") from err
    if digest.hexdigest() != sha256:
        part.unlink()
        raise SamaugError(
            f"{url}: downloaded file has sha256 {digest.hexdigest()}, expected {sha256}; "
            "nothing was kept, try again"
        )
    part.rename(dest)
    return dest


def download_checkpoints(
    names: list[str], directory: Path, base_url: str = BASE_URL, on_bytes=None
) -> list[Path]:
    """Fetch the named official checkpoints (vit_b, vit_l, vit_h) into directory."""
    unknown = [n for n in names if n not in CHECKPOINTS]
    if unknown:
        raise SamaugError(f"unknown checkpoint(s) {unknown}; choose from {', '.join(CHECKPOINTS)}")
    paths = []
    for name in names:
        filename, sha256 = CHECKPOINTS[name]
        paths.append(fetch(f"{base_url}/{filename}", directory / filename, sha256, on_bytes))
    return paths
