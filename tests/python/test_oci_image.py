"""scripts/oci-image: the Fargate task's image built without Docker. Checked as a registry
and a runtime would read it: every blob matches its digest, the manifest and config say what
ECS needs (linux/arm64, the entrypoint, an unprivileged user), the one layer holds the binary
and a CA bundle, the build is reproducible, and skopeo (what deploy.sh pushes with) reads it."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "oci-image"


def build(tmp_path: Path, name: str, binary: bytes = b"\x7fELF nightdump") -> tuple[str, Path]:
    src = tmp_path / f"{name}-bin"
    src.write_bytes(binary)
    ca = tmp_path / "ca.crt"
    ca.write_text("-----BEGIN CERTIFICATE-----\nstand-in\n-----END CERTIFICATE-----\n")
    out = tmp_path / name
    r = subprocess.run([sys.executable, str(SCRIPT), str(src), str(out), "--ca-bundle", str(ca)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip(), out


def read_blob(layout: Path, digest: str) -> bytes:
    data = (layout / "blobs" / "sha256" / digest.removeprefix("sha256:")).read_bytes()
    assert "sha256:" + hashlib.sha256(data).hexdigest() == digest, f"blob {digest} does not match its name"
    return data


def test_the_layout_is_a_linux_arm64_image_of_the_binary(tmp_path: Path) -> None:
    digest, layout = build(tmp_path, "img")
    assert json.loads((layout / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads((layout / "index.json").read_text())
    [entry] = index["manifests"]
    assert entry["digest"] == digest
    assert entry["platform"] == {"architecture": "arm64", "os": "linux"}
    manifest = json.loads(read_blob(layout, digest))
    assert manifest["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    config = json.loads(read_blob(layout, manifest["config"]["digest"]))
    assert (config["architecture"], config["os"]) == ("arm64", "linux")
    assert config["config"]["Entrypoint"] == ["/nightdump"] and config["config"]["Cmd"] == ["task"]
    assert config["config"]["User"] == "65534:65534"
    [layer] = manifest["layers"]
    assert layer["mediaType"] == "application/vnd.oci.image.layer.v1.tar+gzip"
    gz = read_blob(layout, layer["digest"])
    assert layer["size"] == len(gz)
    tar_bytes = gzip.decompress(gz)
    assert config["rootfs"]["diff_ids"] == ["sha256:" + hashlib.sha256(tar_bytes).hexdigest()]
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert members["nightdump"].mode == 0o755
        assert tar.extractfile("nightdump").read() == b"\x7fELF nightdump"
        assert "stand-in" in tar.extractfile("etc/ssl/certs/ca-certificates.crt").read().decode()
        # ECS gives a Fargate bind mount the image's directory only when the image declares
        # it a VOLUME; it must belong to the user the task runs as, or nothing can spill there.
        assert members["tmp"].isdir() and members["tmp"].mode == 0o1777
        assert (members["tmp"].uid, members["tmp"].gid) == (65534, 65534)
        assert all(m.uid == 0 and m.mtime == 0 for name, m in members.items() if name != "tmp")
    assert config["config"]["Volumes"] == {"/tmp": {}}
    assert "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt" in config["config"]["Env"]


def test_the_same_binary_gives_the_same_digest_and_another_binary_another(tmp_path: Path) -> None:
    first, _ = build(tmp_path, "a")
    second, _ = build(tmp_path, "b")
    other, _ = build(tmp_path, "c", binary=b"\x7fELF another build")
    assert first == second
    assert other != first


def test_bad_input_is_refused_in_one_line(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "missing"), str(tmp_path / "out")], capture_output=True, text=True)
    assert r.returncode == 2 and "not found" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_skopeo_reads_the_image(tmp_path: Path) -> None:
    skopeo = shutil.which("skopeo")
    if skopeo is None:
        if os.environ.get("NIGHTDUMP_REQUIRE_SKOPEO") == "1":
            pytest.fail("skopeo is required: apt-get install skopeo")
        pytest.skip("skopeo not installed (scripts/test installs it with apt-get where it can)")
    digest, layout = build(tmp_path, "img")
    r = subprocess.run([skopeo, "inspect", f"oci:{layout}:latest"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["Digest"] == digest
    assert (info["Architecture"], info["Os"]) == ("arm64", "linux")
    # skopeo also copies it, digest preserved, as deploy.sh's push does.
    r = subprocess.run([skopeo, "copy", "--preserve-digests", f"oci:{layout}:latest", f"oci:{tmp_path / 'copy'}:latest"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "copy" / "index.json").read_text())["manifests"][0]["digest"] == digest
