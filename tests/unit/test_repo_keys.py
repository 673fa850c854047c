"""The vendors' apt repositories and their keys, kept once.

roles/dlsetup/vars/main.yml holds the one table of vendor repositories
(NVIDIA's CUDA and container-toolkit repositories, Docker's): URL, suite,
the key kept in roles/dlsetup/files/keys/ and its pinned fingerprint.
nvidia_driver, cuda and container_runtime name a repository and let
tasks/apt_source.yml take the rest from there. A key kept in files/keys/ is
installed on the hosts as it is: its fingerprint is checked here, with gpg,
not on every host.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from dlsetup import content

ROLE = content.roles_dir() / "dlsetup"
VARS = yaml.safe_load((ROLE / "vars" / "main.yml").read_text())
KEYS = ROLE / "files" / "keys"
TABLE: dict[str, dict[str, Any]] = VARS["__dlsetup_apt_repositories"]

needs_gpg = pytest.mark.skipif(shutil.which("gpg") is None, reason="gpg is not installed")


def pins() -> dict[str, str]:
    """{key file: pinned fingerprint} for every key the table names."""
    out = {k["file"]: k["fingerprint"] for k in VARS["__dlsetup_nvidia_cuda_keys"].values()}
    for name, repo in TABLE.items():
        if "{{" not in str(repo["key_file"]):
            out[repo["key_file"]] = repo["fingerprint"]
        else:
            assert name == "nvidia-cuda"  # its key depends on the release: the keys table above
    return out


def fingerprints(key: Path, gnupghome: Path) -> list[str]:
    """The primary keys' fingerprints of a key file, as apt's gpgv would see them."""
    res = subprocess.run(
        ["gpg", "--batch", "--with-colons", "--show-keys", str(key)],
        env={**os.environ, "GNUPGHOME": str(gnupghome)},
        capture_output=True,
        text=True,
        check=True,
    )
    out, primary = [], False
    for line in res.stdout.splitlines():
        field = line.split(":")
        if field[0] in ("pub", "sub"):
            primary = field[0] == "pub"
        elif field[0] == "fpr" and primary:
            out.append(field[9])
            primary = False
    return out


@pytest.fixture
def gnupghome(tmp_path: Path) -> Path:
    home = tmp_path / "gnupg"
    home.mkdir(mode=0o700)
    return home


def test_every_repository_is_complete_and_pinned() -> None:
    assert set(TABLE) == {"nvidia-cuda", "nvidia-container-toolkit", "docker"}
    for name, repo in TABLE.items():
        assert set(repo) == {
            "uris",
            "suites",
            "components",
            "key_file",
            "key_url",
            "fingerprint",
        }, name
    for key_file, fpr in pins().items():
        assert re.fullmatch(r"[0-9A-F]{40}", fpr), (key_file, fpr)
    assert pins()["3bf863cc.pub"] == "EB693B3035CD5710E231E123A4B469963BF863CC"
    assert pins()["nvidia-container-toolkit.asc"] == "C95B321B61E88C1809C4F759DDCAE044F796ECB0"
    assert pins()["docker.asc"] == "9DC858229FC7DD38854AE2D88D81803C0EBFCD88"


@needs_gpg
@pytest.mark.parametrize("key_file", sorted(pins()))
def test_a_kept_key_has_the_pinned_fingerprint(key_file: str, gnupghome: Path) -> None:
    key = KEYS / key_file
    if not key.is_file():
        pytest.skip(
            f"{key_file} is not kept yet: the hosts fetch it once and check it (files/keys/README.md)"
        )
    assert key.read_text().lstrip().startswith("-----BEGIN PGP PUBLIC KEY BLOCK-----")
    assert fingerprints(key, gnupghome) == [pins()[key_file]]


def test_only_keys_the_table_names_are_kept() -> None:
    kept = {p.name for p in KEYS.iterdir()} - {"README.md"}
    assert kept <= set(pins()), kept - set(pins())


@needs_gpg
def test_the_fingerprint_reader_sees_primary_keys_only(gnupghome: Path) -> None:
    """fingerprints() itself, on a key made here (one primary key and a subkey)."""

    def gpg(*args: str) -> str:
        env = {**os.environ, "GNUPGHOME": str(gnupghome)}
        return subprocess.run(["gpg", "--batch", "--passphrase", "", *args], env=env,
                              capture_output=True, text=True, check=True).stdout  # fmt: skip

    gpg("--quick-gen-key", "dlsetup unit test <t@dlsetup.invalid>", "ed25519", "sign", "never")
    listing = gpg("--with-colons", "--list-keys")
    fpr = next(x.split(":")[9] for x in listing.splitlines() if x.startswith("fpr:"))
    gpg("--quick-add-key", fpr, "cv25519", "encr", "never")
    key = gnupghome / "k.asc"
    key.write_text(gpg("--armor", "--export", fpr))
    assert fingerprints(key, gnupghome) == [fpr]


def test_urls_and_fingerprints_exist_once() -> None:
    """No role, playbook, inventory sample or document repeats a pinned fingerprint
    or NVIDIA's repository URL: they live in the dlsetup role's vars (and the
    README beside the kept keys, which says where each key comes from)."""
    home = {ROLE / "vars" / "main.yml", KEYS / "README.md"}
    needles = [*pins().values(), "developer.download.nvidia.com/compute/cuda/repos",
               "nvidia.github.io/libnvidia-container/stable", "download.docker.com/linux"]  # fmt: skip
    roots = [content.collection_dir(), content.sample_inventory(), content.root() / "README.md"]
    files = [f for r in roots for f in ([r] if r.is_file() else r.rglob("*")) if f.is_file()]
    found = {
        (str(f.relative_to(content.root())), n)
        for f in files
        if f not in home and f.suffix in {".yml", ".yaml", ".md", ".py", ".j2", ".cfg"}
        for n in needles
        if n in f.read_text(errors="replace")
    }
    assert found == set()


# -- how apt_source.yml resolves a repository: the vars, templated by Ansible --


def resolve(source: dict[str, Any], role_path: Path = ROLE, **facts: str) -> dict[str, Any]:
    from ansible.parsing.dataloader import DataLoader  # noqa: PLC0415
    from ansible.plugins.loader import init_plugin_loader  # noqa: PLC0415
    from ansible.template import Templar, trust_as_template  # noqa: PLC0415

    init_plugin_loader()
    loader = DataLoader()
    varz = loader.load_from_file(str(ROLE / "vars" / "main.yml"), trusted_as_template=True)
    given = {"distribution": "Debian", "distribution_major_version": "12", "distribution_version": "12.8",
             "distribution_release": "bookworm", "architecture": "x86_64", **facts}  # fmt: skip
    templar = Templar(
        loader=loader,
        variables={
            **varz,
            "ansible_facts": given,
            "dlsetup_apt_source": source,
            "role_path": str(role_path),
        },
    )
    names = [
        "__dlsetup_apt_repo",
        "__dlsetup_apt_key_url",
        "__dlsetup_apt_key_given",
        "__dlsetup_apt_keyring",
    ]
    return {
        n.removeprefix("__dlsetup_apt_"): templar.template(trust_as_template("{{ " + n + " }}"))
        for n in names
    }


def test_nvidia_cuda_per_release_and_architecture() -> None:
    d12 = resolve({"name": "nvidia-cuda"})
    assert (
        d12["repo"]["uris"].strip()
        == "https://developer.download.nvidia.com/compute/cuda/repos/debian12/x86_64/"
    )
    assert d12["repo"]["suites"] == "/" and d12["repo"]["components"] == []
    assert d12["key_url"] == d12["repo"]["uris"].strip() + "3bf863cc.pub"
    assert d12["repo"]["fingerprint"] == "EB693B3035CD5710E231E123A4B469963BF863CC"
    assert d12["keyring"] == "/etc/apt/keyrings/dlsetup-nvidia-cuda.asc"
    d13 = resolve({"name": "nvidia-cuda"}, distribution_major_version="13", architecture="aarch64")
    assert d13["repo"]["uris"].strip().endswith("/repos/debian13/sbsa/")
    assert d13["repo"]["fingerprint"] == "02182E60104FCDC26EAE1B8597A5D4CB8793F200"
    u24 = resolve({"name": "nvidia-cuda"}, distribution="Ubuntu", distribution_major_version="24",
                  distribution_version="24.04")  # fmt: skip
    assert "/repos/ubuntu2404/x86_64/" in u24["repo"]["uris"]
    assert u24["repo"]["fingerprint"] == "EB693B3035CD5710E231E123A4B469963BF863CC"


def test_a_mirror_keeps_the_pin_and_serves_the_key() -> None:
    """Only the URL set (the roles pass empty key settings): the vendor's pin
    stays, a key the vendor serves inside its repository comes from the mirror."""
    cuda = resolve(
        {"name": "nvidia-cuda", "uris": "http://mirror/cuda/", "key_url": "", "fingerprint": ""}
    )
    assert cuda["repo"]["uris"] == "http://mirror/cuda/"
    assert cuda["key_url"] == "http://mirror/cuda/3bf863cc.pub"
    assert cuda["repo"]["fingerprint"] == "EB693B3035CD5710E231E123A4B469963BF863CC"
    docker = resolve({"name": "docker", "uris": "http://mirror/docker"})
    assert docker["key_url"] == "http://mirror/docker/gpg"
    assert docker["repo"]["suites"] == "bookworm" and docker["repo"]["components"] == ["stable"]
    ctk = resolve({"name": "nvidia-container-toolkit", "uris": "http://mirror/ctk/"})
    assert ctk["key_url"] == "https://nvidia.github.io/libnvidia-container/gpgkey"


def test_a_stand_in_replaces_url_key_and_fingerprint() -> None:
    """How the integration tests point the roles at tests/aptrepo.py's repositories."""
    got = resolve({"name": "nvidia-cuda", "uris": "http://10.0.0.2:8080/nvidia-cuda/",
                   "key_url": "http://10.0.0.2:8080/nvidia-cuda/dlsetup-test.pub", "fingerprint": "AB" * 20})  # fmt: skip
    assert got["key_url"] == "http://10.0.0.2:8080/nvidia-cuda/dlsetup-test.pub"
    assert got["repo"]["fingerprint"] == "AB" * 20
    assert got["key_given"] == ""  # fetched and checked on the host


def test_a_kept_key_is_used_unless_another_key_is_named(tmp_path: Path) -> None:
    (tmp_path / "files" / "keys").mkdir(parents=True)
    block = "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nxyz\n-----END PGP PUBLIC KEY BLOCK-----"
    (tmp_path / "files" / "keys" / "docker.asc").write_text(block + "\n")
    assert resolve({"name": "docker"}, role_path=tmp_path)["key_given"] == block + "\n"
    mirror = resolve({"name": "docker", "uris": "http://mirror/docker"}, role_path=tmp_path)
    assert mirror["key_given"] == block + "\n"
    other = resolve(
        {"name": "docker", "key_url": "http://x/k", "fingerprint": "AB" * 20}, role_path=tmp_path
    )
    assert other["key_given"] == ""
    given = resolve(
        {"name": "dlsetup-selftest", "uris": "http://x/", "key": "KEY"}, role_path=tmp_path
    )
    assert given["key_given"] == "KEY"
