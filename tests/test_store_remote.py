"""Remote stores against a real S3-compatible server (moto's server mode on 127.0.0.1), and ``scan_many``.

The server is a real HTTP server speaking the S3 protocol in this test process; the
``safeload`` console script reaches it through s3fs/botocore like it would reach AWS
(``AWS_ENDPOINT_URL``), so nothing on the client side is mocked.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import shutil
import socket
import subprocess
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_store import CLEAN, EVIL, _g, _tensor, safetensors, state_dict, tar_of, torch_zip

pytest.importorskip("s3fs")
boto3 = pytest.importorskip("boto3")
moto_server = pytest.importorskip("moto.server")

EXE = shutil.which("safeload")


@pytest.fixture(scope="module")
def s3() -> Iterator[dict[str, str]]:
    """A moto S3 server on a free loopback port; yields the environment that points clients at it."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    env = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "test",
           "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}
    try:
        yield env
    finally:
        server.stop()


@pytest.fixture(scope="module")
def bucket(s3: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> str:
    client = boto3.client("s3", endpoint_url=s3["AWS_ENDPOINT_URL"], aws_access_key_id="test",
                          aws_secret_access_key="test", region_name="us-east-1")
    client.create_bucket(Bucket="store")
    scratch = tmp_path_factory.mktemp("ckpt")
    body = b"\x00" * 16
    objects = {
        "prod/ok.pkl": CLEAN,
        "prod/evil.pkl": EVIL,
        "prod/README.md": b"# the production models\n",
        "prod/net.pt": torch_zip(scratch / "net.pt", state_dict()).read_bytes(),
        "prod/w.safetensors": safetensors({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, body),
        "prod/deep/bundle.tar.gz": tar_of({"m.pkl": EVIL}, "w:gz"),
        "prod/deep/disguised.txt": EVIL,  # picked by content through a ranged read
        "staging/only.pkl": CLEAN,
    }
    for key, data in objects.items():
        client.put_object(Bucket="store", Key=key, Body=data)
    return "store"


def _run(env: dict[str, str], tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    assert EXE is not None
    environ = dict(os.environ, **env, SAFELOAD_CACHE_DIR=str(tmp_path / "cache"))
    return subprocess.run([EXE, "scan", *args], env=environ, capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(EXE is None, reason="the safeload console script is not installed")
def test_scan_an_s3_prefix(s3: dict[str, str], bucket: str, tmp_path: Path) -> None:
    proc = _run(s3, tmp_path, "--format", "json", f"s3://{bucket}/prod")
    assert proc.returncode == 1, proc.stderr
    doc: dict[str, Any] = json.loads(proc.stdout)
    verdicts = {r["path"]: r["verdict"] for r in doc["results"]}
    assert verdicts == {
        "s3://store/prod/deep/bundle.tar.gz": "unsafe",
        "s3://store/prod/deep/disguised.txt": "unsafe",
        "s3://store/prod/evil.pkl": "unsafe",
        "s3://store/prod/net.pt": "safe",
        "s3://store/prod/ok.pkl": "safe",
        "s3://store/prod/w.safetensors": "no-code",
    }
    evil = next(r for r in doc["results"] if r["path"].endswith("evil.pkl"))
    assert evil["findings"][0]["names"] == ["posix.system"] and len(evil["sha256"]) == 64


@pytest.mark.skipif(EXE is None, reason="the safeload console script is not installed")
def test_s3_single_object_sarif_and_exit_codes(s3: dict[str, str], bucket: str, tmp_path: Path) -> None:
    assert _run(s3, tmp_path, f"s3://{bucket}/staging").returncode == 0
    proc = _run(s3, tmp_path, "--format", "sarif", f"s3://{bucket}/prod/evil.pkl")
    assert proc.returncode == 1
    location = json.loads(proc.stdout)["runs"][0]["results"][0]["locations"][0]["physicalLocation"]
    assert location["artifactLocation"]["uri"] == "s3://store/prod/evil.pkl"
    missing = _run(s3, tmp_path, f"s3://{bucket}/nowhere/x.pkl")
    assert missing.returncode == 2 and "no such remote" in missing.stderr and "Traceback" not in missing.stderr


def test_scan_many_local_and_remote(s3: dict[str, str], bucket: str, tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import safeload

    for key, value in s3.items():
        monkeypatch.setenv(key, value)
    (tmp_path / "local").mkdir()
    (tmp_path / "local" / "a.pkl").write_bytes(CLEAN)
    (tmp_path / "local" / "b.pkl").write_bytes(pickle.dumps([1, 2, 3]))
    (tmp_path / "local" / "empty.pkl").write_bytes(b"")
    reports = list(safeload.scan_many([tmp_path / "local", f"s3://{bucket}/staging"], jobs=2))
    assert [os.path.basename(r.path) for r in reports] == ["a.pkl", "b.pkl", "empty.pkl", "only.pkl"]
    assert [r.failed for r in reports] == [False, False, True, False]  # an empty model file fails
    assert reports[-1].path == "s3://store/staging/only.pkl" and reports[-1].safe
    with pytest.raises(safeload.SafeloadError):
        list(safeload.scan_many([tmp_path / "missing"]))


# --------------------------------------------------------------------------- ranged reads of large zips

_BIG = 12 * 1024 * 1024  # above _remote._RANGED_MIN


def _big_zip(members: dict[str, bytes]) -> bytes:
    """A zip as torch.save writes it: members stored, the tensor bytes last and large."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _checkpoint(data_pkl: bytes, tensor: bytes | None = None) -> bytes:
    return _big_zip({"archive/data.pkl": data_pkl, "archive/byteorder": b"little", "archive/version": b"3\n",
                     "archive/data/0": os.urandom(_BIG) if tensor is None else tensor})


BIG = {
    "big/clean.pt": _checkpoint(state_dict()),
    "big/evil.pt": _checkpoint(state_dict(_tensor("0", rebuild=_g("posix", "system")))),
    "big/script.pt": _big_zip({"m/data.pkl": state_dict(), "m/code/__torch__.py": b"def f(): pass\n",
                               "m/data/0": os.urandom(_BIG)}),
    "big/weights.keras": _big_zip({"config.json": b"{}", "metadata.json": b"{}", "model.weights.h5": os.urandom(_BIG)}),
    "big/arrays.npz": _big_zip({"a.npy": b"\x93NUMPY\x01\x00v\x00" + b"{'descr': '<f8', 'fortran_order': False, "
                                b"'shape': (1572864,), }".ljust(117) + b"\n" + bytes(_BIG)}),
}


@pytest.fixture(scope="module")
def big_bucket(s3: dict[str, str]) -> str:
    client = boto3.client("s3", endpoint_url=s3["AWS_ENDPOINT_URL"], aws_access_key_id="test",
                          aws_secret_access_key="test", region_name="us-east-1")
    client.create_bucket(Bucket="big")
    for key, data in BIG.items():
        client.put_object(Bucket="big", Key=key, Body=data)
    return "big"


def _comparable(report: Any) -> tuple[Any, ...]:
    return (report.verdict, report.format, report.size, report.globals,
            tuple(f for f in report.findings if f.rule != "ranged-read"))


def test_large_zips_are_judged_from_ranged_reads_to_the_local_verdict(
        s3: dict[str, str], big_bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A 12 MB checkpoint is judged from its directory and data.pkl (≤ 192 KiB), to the same report as locally."""
    import safeload

    for key, value in s3.items():
        monkeypatch.setenv(key, value)
    remote = {os.path.basename(r.path): r for r in safeload.scan_many([f"s3://{big_bucket}/big"])}
    for key, data in BIG.items():
        (tmp_path / os.path.basename(key)).write_bytes(data)
    local = {os.path.basename(r.path): r for r in safeload.scan_many([tmp_path])}
    assert sorted(remote) == sorted(local) == sorted(os.path.basename(k) for k in BIG)
    assert {name: r.verdict for name, r in remote.items()} == {
        "clean.pt": "safe", "evil.pt": "unsafe", "script.pt": "not-judged", "weights.keras": "not-judged",
        "arrays.npz": "no-code"}
    for name, report in remote.items():
        assert _comparable(report) == _comparable(local[name]), name
        notes = [f.message for f in report.findings if f.rule == "ranged-read"]
        if name == "arrays.npz":  # an .npz needs every member: read whole, hashed like a local file
            assert notes == [] and report.sha256 == local[name].sha256
            continue
        assert len(notes) == 1 and report.sha256 == "", name
        read = int(notes[0].split()[2])
        assert read <= 3 * 64 * 1024, notes[0]  # the head, the directory, data.pkl: 64 KiB blocks
    assert "posix.system" in remote["evil.pt"].findings[0].names


def test_an_object_replaced_during_ranged_reads_has_no_verdict(
        s3: dict[str, str], big_bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The version is taken before the reads and again after: an object replaced in between (here by a
    same-layout one, so that the reads themselves look consistent) gets an error, not a verdict."""
    from safeload import _remote
    from safeload._policy import Policy

    for key, value in s3.items():
        monkeypatch.setenv(key, value)
    client = boto3.client("s3", endpoint_url=s3["AWS_ENDPOINT_URL"], aws_access_key_id="test",
                          aws_secret_access_key="test", region_name="us-east-1")
    tensor = os.urandom(_BIG)
    clean = _checkpoint(state_dict(), tensor)
    swapped = _checkpoint(state_dict().replace(b"_rebuild_tensor_v2", b"_rebuild_tensor_v0"), tensor)
    assert len(swapped) == len(clean)  # the same layout: a ranged read mixing both would look consistent
    client.put_object(Bucket=big_bucket, Key="swap/model.pt", Body=clean)
    original = _remote._Ranged.readinto
    calls = []

    def racing(self: Any, buffer: Any) -> int:
        calls.append(1)
        if len(calls) == 1:  # between the version check and the first read, another writer replaces it
            client.put_object(Bucket=big_bucket, Key="swap/model.pt", Body=swapped)
        return original(self, buffer)

    monkeypatch.setattr(_remote._Ranged, "readinto", racing)
    url = f"s3://{big_bucket}/swap/model.pt"
    report = _remote._judge(url, len(clean), Policy.default(), False)
    assert len(calls) >= 2  # the ranged path ran (a whole read would have made no ranged call)
    assert report.verdict == "error" and "changed while it was read" in report.findings[0].message


def test_a_store_without_object_versions_gets_whole_reads(tmp_path: Path) -> None:
    """fsspec's local filesystem reports a modification time but no ETag or version: a ranged judgement
    could not notice a swap between its reads, so the checkpoint is read whole and hashed instead."""
    import safeload

    (tmp_path / "clean.pt").write_bytes(BIG["big/clean.pt"])
    (tmp_path / "evil.pt").write_bytes(BIG["big/evil.pt"])
    reports = {os.path.basename(r.path): r for r in safeload.scan_many([f"file://{tmp_path}"])}
    assert {name: r.verdict for name, r in reports.items()} == {"clean.pt": "safe", "evil.pt": "unsafe"}
    for name, report in reports.items():
        assert not [f for f in report.findings if f.rule == "ranged-read"], name
        assert report.sha256 == hashlib.sha256(BIG[f"big/{name}"]).hexdigest()
