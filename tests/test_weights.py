import hashlib

import pytest

from precompute.downloads import fetch, sha256_file
from precompute.types import SamaugError
from tests.support.http import serve


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


def test_weights_command_fetches_sam_and_backbones_and_checks_them(tmp_path, capsys):
    from samaug.cli import main
    from train.models.backbones import BACKBONES

    def error_line(*args: str) -> str:
        """The command line run in-process: exit 1 and its one ``error:`` line."""
        with pytest.raises(SystemExit) as exit_:
            main(list(args))
        assert exit_.value.code == 1
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), lines
        return lines[0]

    line = error_line("weights", "vit_q", "--dir", str(tmp_path))
    choices = "vit_b, vit_l, vit_h, swin_t, pvt_v2_b2"
    assert line == f"error: unknown weights vit_q; choose from {choices}"
    served = tmp_path / "mirror"
    served.mkdir()
    for name in ("sam_vit_h_4b8939.pth", BACKBONES["swin_t"].filename):
        (served / name).write_bytes(b"not the published file")
    with serve(served) as url:
        # Unnamed: the paper's ViT-H first, then Swin-T; each checked against its sha256.
        line = error_line("weights", "--dir", str(tmp_path / "w"), "--base-url", url)
        assert "sam_vit_h_4b8939.pth: downloaded file has sha256" in line
        line = error_line("weights", "swin_t", "--dir", str(tmp_path / "w"), "--base-url", url)
    assert f"{BACKBONES['swin_t'].filename}: downloaded file has sha256" in line
    assert f"expected {BACKBONES['swin_t'].sha256}; nothing was kept" in line
    assert not any((tmp_path / "w").iterdir())
