"""Files written atomically: the old file or the new one, never a part, with the permissions
any other file of the user gets (the umask), so a colleague can read a shared bundle."""

import os
import stat
import subprocess
import sys

import pytest

from precompute.files import atomic_file, atomic_write_json


def mode_of(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o077, 0o002])
def test_atomic_files_take_the_umask_as_open_does(tmp_path, umask):
    # A subprocess: the umask is the process's, and the other tests run beside this one.
    code = (
        "import os, sys\n"
        f"os.umask({umask})\n"
        "from precompute.files import atomic_write_json\n"
        "atomic_write_json(sys.argv[1] + '/atomic.json', {'a': 1})\n"
        "open(sys.argv[1] + '/plain.json', 'w').close()\n"
    )
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=True)
    assert mode_of(tmp_path / "atomic.json") == 0o666 & ~umask
    assert mode_of(tmp_path / "atomic.json") == mode_of(tmp_path / "plain.json")


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    atomic_write_json(tmp_path / "x.json", {"old": True})
    with pytest.raises(RuntimeError), atomic_file(tmp_path / "x.json", "w") as f:
        f.write("half")
        raise RuntimeError("killed")
    assert (tmp_path / "x.json").read_text() == '{\n  "old": true\n}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.json"]
