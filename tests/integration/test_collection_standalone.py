"""The collection dlsetup.box works on its own (issue 13's "done means").

Plain ``ansible-playbook`` (and AWX) must run the playbooks where the dlsetup
Python package cannot be imported, and an installed wheel must work from any
folder, by collection name. Each run here goes through a ``sitecustomize.py``
that installs a meta-path finder refusing ``dlsetup`` and ``dlsetup.*`` (and
logging every attempt), and that can drop any checkout from ``sys.path``, so a
test cannot pass by finding the package, or the checkout's collection, by
accident. A control run shows the blocker works.

Targets: the sample inventory for what needs no host (--syntax-check,
--list-tasks of the whole site), and this machine over a local connection for
the preflight and the facts stage in check mode (the preflight only reads;
check mode changes nothing).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
ANSIBLE_PLAYBOOK = BIN / "ansible-playbook"

SITECUSTOMIZE = '''\
"""Test harness: refuse to import dlsetup; optionally keep one copy of it on sys.path."""
import os
import sys

_LOG = os.environ.get("DLSETUP_BLOCK_LOG")
_KEEP = os.environ.get("DLSETUP_KEEP_ONLY")
if _KEEP:  # drop every other sys.path folder that holds dlsetup or dlsetup.box
    def _holds(p):
        return any(os.path.exists(os.path.join(p or ".", *rel)) for rel in (
            ("dlsetup", "__init__.py"), ("ansible_collections", "dlsetup", "box", "galaxy.yml")))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") == _KEEP or not _holds(p)]


class _RefuseDlsetup:
    def find_spec(self, name, path=None, target=None):
        if os.environ.get("DLSETUP_BLOCK") and (name == "dlsetup" or name.startswith("dlsetup.")):
            if _LOG:
                with open(_LOG, "a") as fh:
                    fh.write(name + "\\n")
            raise ImportError("dlsetup is blocked in this test: " + name)
        return None


sys.meta_path.insert(0, _RefuseDlsetup())
'''

pytestmark = pytest.mark.skipif(
    not ANSIBLE_PLAYBOOK.is_file(), reason="ansible-playbook is not in this Python's environment"
)


def blocked_env(
    tmp_path: Path, *, pythonpath: tuple[Path, ...] = (), keep_only: Path | None = None
):
    """An environment whose Pythons cannot import dlsetup; returns (env, log path)."""
    harness = tmp_path / "harness"
    harness.mkdir(exist_ok=True)
    (harness / "sitecustomize.py").write_text(SITECUSTOMIZE)
    log = tmp_path / "blocked.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "PYTHON"))}
    env.update(
        PYTHONPATH=os.pathsep.join(str(p) for p in [harness, *pythonpath]),
        DLSETUP_BLOCK="1",
        DLSETUP_BLOCK_LOG=str(log),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_LOCAL_TEMP=str(tmp_path / "ansible-tmp"),
        ANSIBLE_HOME=str(tmp_path / "ansible-home"),
        PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    )
    if keep_only is not None:
        # the editable install's .pth puts a checkout and its collections/ on sys.path
        env["DLSETUP_KEEP_ONLY"] = str(keep_only)
    return env, log


def run(argv: list[str], env: dict[str, str], cwd: Path, timeout: int = 300):
    return subprocess.run(
        argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )


def test_the_blocker_blocks(tmp_path):
    env, log = blocked_env(tmp_path)
    res = run([sys.executable, "-c", "import dlsetup"], env, REPO)
    assert res.returncode != 0 and "dlsetup is blocked in this test" in res.stderr
    assert log.read_text() == "dlsetup\n"
    # ... and nothing else: ansible and the checkout's collection still import
    res = run(
        [
            sys.executable,
            "-c",
            "import ansible, ansible_collections.dlsetup.box.plugins.module_utils.compat as c;"
            "print(len(c.load().gpus))",
        ],
        env,
        REPO,
    )
    assert res.returncode == 0, res.stderr
    assert int(res.stdout) > 900


def test_whole_site_parses_from_the_checkout_without_dlsetup(tmp_path):
    """ansible-playbook -i inventory/sample playbooks/site.yml, as the README says,
    resolves every role, module and plugin without the dlsetup package."""
    env, log = blocked_env(tmp_path)
    for mode in ("--syntax-check", "--list-tasks"):
        res = run(
            [str(ANSIBLE_PLAYBOOK), "-i", "inventory/sample", "playbooks/site.yml", mode],
            env,
            REPO,
        )
        assert res.returncode == 0, mode + "\n" + res.stdout + res.stderr
    assert "Check driver, CUDA and cuDNN versions" in res.stdout
    assert not log.exists(), f"something tried to import dlsetup: {log.read_text()}"


def test_preflight_and_a_stage_in_check_mode_without_dlsetup(tmp_path):
    """The preflight (validate_vars, the probe, compat_check and its engine) and
    the facts stage run in check mode against this machine, with dlsetup
    unimportable, and nobody even tries to import it."""
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(
        json.dumps(
            {
                "all": {
                    "hosts": {
                        "thisbox": {
                            "ansible_connection": "local",
                            "ansible_python_interpreter": sys.executable,
                            # checked by compat against this box's (absent) GPUs and Debian's
                            # packages: the engine and its data load in the plugin
                            "cuda_version": "12.4",
                        }
                    }
                }
            }
        )
    )
    env, log = blocked_env(tmp_path)
    res = run(
        [
            str(ANSIBLE_PLAYBOOK),
            "-i",
            str(inventory),
            "--check",
            "playbooks/preflight.yml",
            "playbooks/facts.yml",
        ],
        env,
        REPO,
        timeout=600,
    )
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    assert "TASK [dlsetup.box.dlsetup : Check driver, CUDA and cuDNN versions" in out
    assert "failed=0" in out
    assert not log.exists(), f"something tried to import dlsetup: {log.read_text()}"


@pytest.fixture(scope="module")
def installed_wheel(tmp_path_factory) -> Path:
    """dlsetup's wheel, built from this checkout and installed into a bare folder."""
    base = tmp_path_factory.mktemp("wheel")
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    res = subprocess.run(
        [*pip, "wheel", "--no-deps", "-q", "-w", str(base / "dist"), str(REPO)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if res.returncode != 0:
        pytest.skip(f"pip wheel could not build dlsetup here: {res.stderr[-500:]}")
    (wheel,) = (base / "dist").glob("dlsetup-*.whl")
    target = base / "site"
    subprocess.run(
        [*pip, "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    return target


def test_installed_wheel_works_by_collection_name_from_another_folder(tmp_path, installed_wheel):
    """From a folder with no ansible.cfg, the checkout hidden from sys.path and no
    collections path configured, ansible-playbook finds dlsetup.box in the
    installed wheel (site-packages' ansible_collections) by name; its preflight
    plugin and the compat engine's data work from there, without dlsetup."""
    env, log = blocked_env(tmp_path, pythonpath=(installed_wheel,), keep_only=installed_wheel)
    env["ANSIBLE_COLLECTIONS_PATH"] = str(tmp_path / "no-collections")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    where = run(
        [
            sys.executable,
            "-c",
            "import ansible_collections.dlsetup.box.plugins.module_utils.compat as c;"
            "print(c.__file__)",
        ],
        env,
        elsewhere,
    )
    assert where.returncode == 0, where.stderr
    assert where.stdout.strip().startswith(str(installed_wheel)), where.stdout

    res = run([str(ANSIBLE_PLAYBOOK), "--syntax-check", "dlsetup.box.site"], env, elsewhere)
    assert res.returncode == 0, res.stdout + res.stderr

    play = elsewhere / "compat.yml"
    play.write_text(
        textwrap.dedent(
            """\
            - name: Compat only
              hosts: all
              gather_facts: false
              tasks:
                - name: Check
                  dlsetup.box.compat_check:
                    gpus: [{pci_id: "10de:102d", vendor_id: "10de", nvidia: true,
                            name: "GK210GL [Tesla K80]", address: "0000:01:00.0"}]
                    distro: debian-12
            """
        )
    )
    res = run(
        [
            str(ANSIBLE_PLAYBOOK),
            "-i",
            "k80box,",
            "-c",
            "local",
            "-e",
            f"ansible_python_interpreter={sys.executable} cuda_version=12.4",
            str(play),
        ],
        env,
        elsewhere,
    )
    out = res.stdout + res.stderr
    assert res.returncode == 2, out
    assert "k80box: these versions do not work" in out and "Tesla K80" in out
    assert not log.exists(), f"something tried to import dlsetup: {log.read_text()}"
