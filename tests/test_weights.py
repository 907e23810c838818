import hashlib

import pytest
from http_server import serve

from precompute.types import SamaugError
from precompute.weights import fetch, sha256_file


def test_fetch_checks_sha256_and_keeps_nothing_bad(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    payload = b"not really a checkpoint" * 1000
    (served / "sam.pth").write_bytes(payload)
    good = hashlib.sha256(payload).hexdigest()
    with serve(served) as url:
        dest = tmp_path / "ckpt" / "sam.pth"
        with pytest.raises(SamaugError, match=f"expected {'0' * 64}"):
            fetch(f"{url}/sam.pth", dest, "0" * 64)
        assert not dest.exists() and not dest.with_name("sam.pth.part").exists()
        seen = []
        assert fetch(f"{url}/sam.pth", dest, good, lambda d, t: seen.append((d, t))) == dest
        assert sha256_file(dest) == good and seen[-1] == (len(payload), len(payload))
        assert fetch(f"{url}/sam.pth", dest, good) == dest  # already there: no download
        with pytest.raises(SamaugError, match="cannot download"):
            fetch(f"{url}/absent.pth", tmp_path / "x.pth", good)
    dest.write_bytes(b"tampered")
    with pytest.raises(SamaugError, match="delete it and run `make weights`"):
        fetch("http://127.0.0.1:9/unused", dest, good)
