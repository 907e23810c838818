"""The loopback server the remote-store tests and benchmarks use: Range requests answered as a
web server answers them (RFC 9110), every request counted; and the tests' own faulty one."""

import http.client
import urllib.error
import urllib.request

import pytest

from tests.support.http import faulty, running


def get(url: str, range_header: str | None = None, method: str = "GET"):
    request = urllib.request.Request(url, method=method)
    if range_header:
        request.add_header("Range", range_header)
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, dict(answer.headers), answer.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), b""


@pytest.fixture
def site(tmp_path):
    (tmp_path / "f.bin").write_bytes(bytes(range(200)))
    return tmp_path


@pytest.fixture
def served(site):
    with running(site) as server:
        yield server


@pytest.fixture
def served_faulty(site):
    with faulty(site, stall_seconds=0.2) as server:
        yield server


def test_ranges_are_answered_with_exactly_the_bytes_asked_for(served):
    url = f"{served.url}/f.bin"
    status, headers, body = get(url, "bytes=10-19")
    assert (status, body, headers["Content-Range"]) == (
        206,
        bytes(range(10, 20)),
        "bytes 10-19/200",
    )
    assert get(url, "bytes=190-")[2] == bytes(range(190, 200))
    assert get(url, "bytes=-3")[2] == bytes([197, 198, 199])
    assert get(url, "bytes=150-999")[2] == bytes(range(150, 200))  # clipped to the file
    assert get(url, "bytes=200-")[0] == 416
    status, headers, body = get(url)
    assert (status, body, headers["Accept-Ranges"]) == (200, bytes(range(200)), "bytes")
    status, headers, body = get(url, method="HEAD")
    assert (status, headers["Content-Length"], body) == (200, "200", b"")
    assert get(f"{served.url}/absent")[0] == 404
    assert [(r.method, r.range) for r in served.reset()] == [
        ("GET", "bytes=10-19"),
        ("GET", "bytes=190-"),
        ("GET", "bytes=-3"),
        ("GET", "bytes=150-999"),
        ("GET", "bytes=200-"),
        ("GET", None),
        ("HEAD", None),
        ("GET", None),
    ]
    assert served.count() == 0


def test_faults_are_made_on_demand_and_healed(served_faulty):
    url = f"{served_faulty.url}/f.bin"
    served_faulty.fail("f.bin", "error")
    assert get(url)[0] == 500
    served_faulty.fail("f.bin", "drop")
    with pytest.raises(http.client.IncompleteRead):
        get(url)
    served_faulty.heal()
    assert get(url)[2] == bytes(range(200))
    with pytest.raises(ValueError, match="not one of stall, drop, error"):
        served_faulty.fail("f.bin", "slow")
