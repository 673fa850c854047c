"""Signed local apt repositories, served over http: the stand-in for NVIDIA's servers.

NVIDIA's CUDA repository and its libnvidia-container repository cannot be
reached from CI. The roles still add them the way users' boxes do (a key whose
fingerprint is checked, a deb822 source with signed-by, a mirror setting), and
the tests point that mirror setting here: at repositories built from YAML specs
under tests/fixtures/aptrepo/<repo>/*.yml, whose packages carry NVIDIA's names
and dependency structure but hold small stand-in files. They are signed with a
test key made on first use and served by a project container
(`dlsetup-aptrepo`, python3's http.server) on the docker bridge.

    python tests/aptrepo.py up      # build (if the specs changed), serve, print JSON
    python tests/aptrepo.py down    # stop the server

Spec format (all files of one repo directory are merged)::

    layout: {suite: bookworm, component: stable}   # optional, see below
    packages:
      - name: nvidia-container-toolkit
        version: "1.17.8-1"
        depends: "nvidia-container-toolkit-base (= 1.17.8-1)"
        description: "stand-in for NVIDIA's package (test double)"
        files:
          /usr/bin/nvidia-ctk: {mode: "0755", content: "#!/bin/sh\\n..."}
        postinst: "#!/bin/sh\\n..."

Without `layout` a repository is flat (apt's suite "/"), as NVIDIA's are;
with it, a dists/<suite>/<component>/binary-amd64 tree and a pool/, as
Docker's repository is (download.docker.com/linux/debian bookworm stable).
"""

from __future__ import annotations

import fcntl
import gzip
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
SPECS = REPO / "tests" / "fixtures" / "aptrepo"
CACHE = REPO / ".cache" / "aptrepo"
SERVER = "dlsetup-aptrepo"
PORT = 8080
KEY_FILE = "dlsetup-test.pub"
_UID = "dlsetup test repository (stand-in for NVIDIA) <test@dlsetup.invalid>"


class AptRepoError(RuntimeError):
    pass


def _run(argv: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(argv, capture_output=True, text=True, check=False, **kw)
    if res.returncode != 0:
        raise AptRepoError(f"{' '.join(argv)} failed ({res.returncode}): {res.stderr.strip()}")
    return res


# -- the signing key ---------------------------------------------------------


def _gnupghome() -> Path:
    home = CACHE / "gnupg"
    home.mkdir(parents=True, exist_ok=True)
    home.chmod(0o700)
    return home


def _gpg(*args: str, inp: str | None = None) -> str:
    env = dict(os.environ, GNUPGHOME=str(_gnupghome()))
    return _run(["gpg", "--batch", "--yes", *args], env=env, input=inp).stdout


def _fresh_agent() -> None:
    """Stop a gpg-agent left serving this key folder under another path.

    gpg starts an agent for its home folder on first use and leaves it
    running, its socket in that folder (no /run/user here). When the checkout,
    or its .cache, is moved while that agent runs, the socket moves with the
    folder but the agent still reads the old path: every key operation then
    fails with "No such file or directory". gpgconf --kill stops whichever
    agent answers the socket; the next gpg call starts one for this path.
    Called with the build lock held, so no other session's gpg is mid-call."""
    env = dict(os.environ, GNUPGHOME=str(_gnupghome()))
    subprocess.run(["gpgconf", "--kill", "gpg-agent"], env=env, capture_output=True, check=False)


def fingerprint() -> str:
    """The test key's fingerprint, making the key on first use."""
    out = _gpg("--with-colons", "--list-secret-keys")
    if "fpr:" not in out:
        _gpg("--passphrase", "", "--quick-gen-key", _UID, "rsa3072", "sign", "never")
        out = _gpg("--with-colons", "--list-secret-keys")
    for line in out.splitlines():
        if line.startswith("fpr:"):
            return line.split(":")[9]
    raise AptRepoError("no fingerprint in gpg's output")


# -- building ------------------------------------------------------------------


def load_specs() -> dict[str, dict[str, Any]]:
    """{repo: {"packages": [package spec, ...], "layout": {"suite", "component"} or None}}
    from tests/fixtures/aptrepo/<repo>/*.yml, each file read once."""
    repos: dict[str, dict[str, Any]] = {}
    for d in sorted(p for p in SPECS.iterdir() if p.is_dir()) if SPECS.is_dir() else []:
        pkgs: list[dict[str, Any]] = []
        layout: dict[str, str] | None = None
        for f in sorted(d.glob("*.yml")):
            data = yaml.safe_load(f.read_text()) or {}
            pkgs.extend(data.get("packages") or [])
            if data.get("layout"):
                layout = {k: str(v) for k, v in data["layout"].items()}
        names = [(p["name"], str(p["version"])) for p in pkgs]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise AptRepoError(f"{d.name}: package defined twice: {sorted(dup)}")
        repos[d.name] = {"packages": pkgs, "layout": layout}
    return repos


def _specs_hash() -> str:
    h = hashlib.sha256(Path(__file__).read_bytes())
    for f in sorted(SPECS.rglob("*.yml")) if SPECS.is_dir() else []:
        h.update(str(f.relative_to(SPECS)).encode())
        h.update(f.read_bytes())
    h.update(fingerprint().encode())
    return h.hexdigest()[:16]


def _control(pkg: dict[str, Any]) -> str:
    fields = {
        "Package": pkg["name"],
        "Version": str(pkg["version"]),
        "Architecture": pkg.get("architecture", "amd64"),
        "Maintainer": "dlsetup tests <test@dlsetup.invalid>",
        "Pre-Depends": pkg.get("pre_depends", ""),
        "Depends": pkg.get("depends", ""),
        "Provides": pkg.get("provides", ""),
        "Conflicts": pkg.get("conflicts", ""),
        "Replaces": pkg.get("replaces", ""),
        "Section": pkg.get("section", "multiverse/devel"),
        "Priority": "optional",
        "Description": pkg.get("description", "stand-in for NVIDIA's package (test double)"),
    }
    return "".join(f"{k}: {v}\n" for k, v in fields.items() if v)


def debian_deb(name: str) -> Path:
    """Debian 12's own .deb of ``name``, downloaded once, in a ``dlsetup/debian:12``
    container (the host's apt lists may be old or missing), into .cache/aptrepo/debian/."""
    folder = CACHE / "debian"
    folder.mkdir(parents=True, exist_ok=True)
    found = sorted(folder.glob(f"{name}_*.deb"))
    if not found:
        res = _docker(
            "run", "--rm", "-v", f"{folder}:/out", "-w", "/out", "dlsetup/debian:12",
            "sh", "-c", f"apt-get update -qq && apt-get download -q {name}",
            check=False,
        )  # fmt: skip
        found = sorted(folder.glob(f"{name}_*.deb"))
        if not found:
            raise AptRepoError(f"could not download Debian's {name}: {res.stderr[-600:]}")
    return found[-1]


def build_deb(pkg: dict[str, Any], outdir: Path) -> Path:
    """The package of a spec: its files and scripts; with ``repack: <name>``,
    Debian's own package of that name (files and maintainer scripts) under the
    spec's name, version and relations: a stand-in that really works."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "root"
        if pkg.get("repack"):
            _run(["dpkg-deb", "-R", str(debian_deb(pkg["repack"])), str(root)])
        else:
            (root / "DEBIAN").mkdir(parents=True)
        (root / "DEBIAN" / "control").write_text(_control(pkg))
        for script in ("preinst", "postinst", "prerm", "postrm"):
            if pkg.get(script):
                p = root / "DEBIAN" / script
                p.write_text(pkg[script])
                p.chmod(0o755)
        for path, given in (pkg.get("files") or {}).items():
            spec = given if isinstance(given, dict) else {"content": given}
            dest = root / path.lstrip("/")
            dest.parent.mkdir(parents=True, exist_ok=True)
            if "symlink" in spec:
                dest.symlink_to(spec["symlink"])
                continue
            dest.write_text(spec.get("content", ""))
            dest.chmod(int(str(spec.get("mode", "0644")), 8))
        arch = pkg.get("architecture", "amd64")
        deb = outdir / f"{pkg['name']}_{str(pkg['version']).split(':')[-1]}_{arch}.deb"
        # uncompressed: a repacked engine is 150 MB, which gzip takes half a minute for
        _run(["dpkg-deb", "--root-owner-group", "-Znone", "--build", str(root), str(deb)])
    return deb


def _stanza(pkg: dict[str, Any], deb: Path, repo_dir: Path) -> str:
    data = deb.read_bytes()
    extra = {
        "Filename": f"./{deb.relative_to(repo_dir)}",
        "Size": str(len(data)),
        "MD5sum": hashlib.md5(data, usedforsecurity=False).hexdigest(),
        "SHA256": hashlib.sha256(data).hexdigest(),
    }
    return _control(pkg) + "".join(f"{k}: {v}\n" for k, v in extra.items())


def build_repo(
    name: str, pkgs: list[dict[str, Any]], repo_dir: Path, layout: dict[str, str] | None = None
) -> None:
    """A flat repository (suite "/"), as NVIDIA's CUDA repository is; with a
    ``layout``, a dists/<suite>/<component> tree and a pool/, as Docker's is."""
    repo_dir.mkdir(parents=True)
    if layout is None:
        pool = release_dir = index_dir = repo_dir
        suite_fields = ""
    else:
        pool = repo_dir / "pool"
        release_dir = repo_dir / "dists" / layout["suite"]
        index_dir = release_dir / layout["component"] / "binary-amd64"
        pool.mkdir()
        index_dir.mkdir(parents=True)
        suite_fields = (
            f"Suite: {layout['suite']}\nCodename: {layout['suite']}\n"
            f"Components: {layout['component']}\n"
        )
    stanzas = [_stanza(p, build_deb(p, pool), repo_dir) for p in pkgs]
    packages = "\n".join(stanzas).encode()
    (index_dir / "Packages").write_bytes(packages)
    (index_dir / "Packages.gz").write_bytes(gzip.compress(packages, mtime=0))
    sums = []
    for f in ("Packages", "Packages.gz"):
        b = (index_dir / f).read_bytes()
        sums.append(
            f" {hashlib.sha256(b).hexdigest()} {len(b)} {(index_dir / f).relative_to(release_dir)}"
        )
    date = time.strftime("%a, %d %b %Y %H:%M:%S UTC", time.gmtime())
    release = (
        f"Origin: dlsetup-test\nLabel: {name} (dlsetup stand-in)\n{suite_fields}"
        f"Architectures: amd64 all\nDate: {date}\nSHA256:\n" + "\n".join(sums) + "\n"
    )
    (release_dir / "Release").write_text(release)
    rel = str(release_dir / "Release")
    _gpg("--clearsign", "-o", str(release_dir / "InRelease"), rel)
    _gpg("-abs", "-o", str(release_dir / "Release.gpg"), rel)
    (repo_dir / KEY_FILE).write_text(_gpg("--armor", "--export", fingerprint()))


def build() -> Path:
    """Build every repository into .cache/aptrepo/srv, unless the specs are unchanged."""
    srv = CACHE / "srv"
    stamp = srv / ".hash"
    digest = _specs_hash()
    if stamp.is_file() and stamp.read_text() == digest:
        return srv
    srv.mkdir(parents=True, exist_ok=True)
    for child in srv.iterdir():
        shutil.rmtree(child) if child.is_dir() else child.unlink()
    for name, spec in load_specs().items():
        build_repo(name, spec["packages"], srv / name, spec["layout"])
    stamp.write_text(digest)
    return srv


# -- serving -------------------------------------------------------------------


def _docker(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(["docker", *args], capture_output=True, text=True, check=False)
    if check and res.returncode != 0:
        raise AptRepoError(f"docker {' '.join(args)}: {res.stderr.strip()}")
    return res


def _server_ip(srv: Path) -> str | None:
    """The server's address, when it runs and serves this checkout's repositories."""
    res = _docker(
        "inspect",
        "-f",
        '{{.State.Running}} {{index .Config.Labels "dlsetup.srv"}} '
        "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
        SERVER,
        check=False,
    )
    running, served, ip = [*res.stdout.strip().split(" "), "", "", ""][:3]
    ok = res.returncode == 0 and running == "true" and served == str(srv) and ip
    return ip if ok else None


def _answers(base: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(base, timeout=2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise AptRepoError(f"{SERVER} does not answer at {base}") from None
            time.sleep(0.2)


def _serves(base: str, srv: Path) -> bool:
    """The server hands out this folder's files. A checkout deleted and cloned
    again at the same path has the same label, while the running container's
    bind mount still holds the deleted folder (every file 404)."""
    probe = next(iter(sorted(srv.glob(f"*/{KEY_FILE}"))), None)
    if probe is None:
        return True
    try:
        with urllib.request.urlopen(base + probe.relative_to(srv).as_posix(), timeout=5) as r:
            return bool(r.read() == probe.read_bytes())
    except OSError:
        return False


def serve(srv: Path) -> str:
    """Start the server container (if needed); return its base URL."""
    ip = _server_ip(srv)
    if ip is not None:
        _answers(f"http://{ip}:{PORT}/", 20)
        if not _serves(f"http://{ip}:{PORT}/", srv):
            ip = None
    if ip is None:  # not running, or serving another checkout's repositories
        _docker("rm", "-f", SERVER, check=False)
        _docker(
            "run", "-d", "--name", SERVER, "--label", "dlsetup.test=aptrepo",
            "--label", f"dlsetup.srv={srv}",
            "-v", f"{srv}:/srv:ro", "dlsetup/debian:12",
            "python3", "-m", "http.server", str(PORT), "--directory", "/srv",
        )  # fmt: skip
        ip = _server_ip(srv)
    if ip is None:
        raise AptRepoError(f"{SERVER} did not start: {_docker('logs', SERVER, check=False).stderr}")
    base = f"http://{ip}:{PORT}/"
    _answers(base, 20)
    return base


def up() -> dict[str, dict[str, Any]]:
    """Build and serve every repository; what a role's mirror settings need, per repo."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with (CACHE / "lock").open("w") as lock:  # several test sessions may call this at once
        fcntl.flock(lock, fcntl.LOCK_EX)
        _fresh_agent()
        srv = build()
        base = serve(srv)
        fpr = fingerprint()
    return {
        name: {
            "url": f"{base}{name}/",
            "suites": spec["layout"]["suite"] if spec["layout"] else "/",
            "components": [spec["layout"]["component"]] if spec["layout"] else [],
            "key_url": f"{base}{name}/{KEY_FILE}",
            "fingerprint": fpr,
        }
        for name, spec in load_specs().items()
    }


def down() -> None:
    _docker("rm", "-f", SERVER, check=False)


def main(argv: list[str]) -> int:
    if argv[1:] == ["up"]:
        print(json.dumps(up(), indent=2))
        return 0
    if argv[1:] == ["down"]:
        down()
        return 0
    print("usage: aptrepo.py up|down", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
