"""Check a host's driver / CUDA / cuDNN settings against the GPUs it really has.

Runs on the controller (no connection to the host) after the preflight probe
(``dl_facts_probe``, dl_facts' discovery of the host's PCI display
controllers: this plugin consumes that list and never looks for GPUs itself).
The host's settings (``nvidia_driver_source``, ``nvidia_driver_branch``,
``nvidia_driver_kernel_modules``, ``cuda_source``, ``cuda_version``,
``cuda_cudnn_version``) go through the compat engine's :func:`check`
(``plugins/module_utils/compat``, shipped in this collection, so plain
ansible-playbook needs no dlsetup package). An incompatible combination fails
the task, naming the host, the GPUs, the settings at fault and the newest
combination that works; inside the Preflight play that is exit 2, before
anything is installed.

Where the settings come from: the task's variables, as Ansible resolved them.
A task inside the nvidia_driver role already sees that role's defaults there;
the preflight runs in the dlsetup role, which sees neither nvidia_driver's nor
cuda's. So for a setting the task's variables lack, the plugin asks Ansible to
load the role that owns it (``OWNERS``, by collection name, as include_role
would) and takes its default from ``Role.get_default_vars()``: no file is read
by hand, and role defaults being Ansible's lowest precedence, whatever the
task's variables hold wins.

The nvidia_driver role calls the same plugin to learn what
``kernel_modules: auto`` means for the GPUs it finds (``kernel_modules`` and
``driver`` in the result).

:func:`decide` is the whole decision, pure and unit-tested
(tests/unit/test_compat_preflight.py); the ActionModule only gathers its inputs.
"""

from __future__ import annotations

from typing import Any

from ansible.playbook.role import Role
from ansible.playbook.role.include import RoleInclude
from ansible.plugins.action import ActionBase
from ansible.vars.manager import VariableManager
from ansible_collections.dlsetup.box.plugins.module_utils import compat

# setting -> the role that owns it (its defaults/main.yml documents it)
SETTINGS = {
    "nvidia_driver_source": "dlsetup.box.nvidia_driver",
    "nvidia_driver_branch": "dlsetup.box.nvidia_driver",
    "nvidia_driver_kernel_modules": "dlsetup.box.nvidia_driver",
    "cuda_source": "dlsetup.box.cuda",
    "cuda_version": "dlsetup.box.cuda",
    "cuda_cudnn_version": "dlsetup.box.cuda",
}

# compat's report fields -> the host variable a user changes
FIELD_VARS = {
    "driver": "nvidia_driver_branch",
    "kernel_modules": "nvidia_driver_kernel_modules",
    "cuda": "cuda_version",
    "cudnn": "cuda_cudnn_version",
    "gpu": "the GPU itself",
    "distro": "the distribution",
}


def _text(value: Any) -> str | None:
    """A setting as compat takes it: None when unset or empty."""
    if value is None:
        return None
    text = str(value).strip()
    return text or None


distro_key = compat.distro_key  # ('Debian', '12') -> 'debian-12'


def nvidia_gpus(probe_gpus: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """The NVIDIA GPUs among the probe's display controllers, as the probe judged
    them (``nvidia``: module_utils/pci_gpus.py's one rule): no second opinion here."""
    return [g for g in probe_gpus or [] if g.get("nvidia")]


def _label(g: dict[str, Any]) -> str:
    name = g.get("name") or "NVIDIA GPU"
    return f"{name} [{g.get('pci_id', '?')}] at {g.get('address', '?')}"


def decide(
    host: str,
    probe_gpus: list[dict[str, Any]] | None,
    settings: dict[str, Any],
    distro: str | None,
) -> dict[str, Any]:
    """The preflight verdict for one host.

    ``probe_gpus`` is ``dl_facts_probe.gpus``; ``settings`` maps the names in
    SETTINGS to the host's values (defaults already applied); ``distro`` is
    e.g. 'debian-12'. Returns ``failed``, ``msg``, ``checked`` (False when
    there was nothing to check), ``driver`` (the branch or version the role
    will install, when known), ``kernel_modules`` (what 'auto' resolves to),
    ``gpus`` (names found), ``warnings`` and ``report`` (compat's, as a dict).
    """
    source = _text(settings.get("nvidia_driver_source")) or "distro"
    branch = _text(settings.get("nvidia_driver_branch"))
    flavor = _text(settings.get("nvidia_driver_kernel_modules")) or "auto"
    cuda = _text(settings.get("cuda_version"))
    cudnn = _text(settings.get("cuda_cudnn_version"))
    out: dict[str, Any] = {
        "failed": False,
        "checked": False,
        "gpus": [],
        "warnings": [],
        "driver": branch,
        "kernel_modules": flavor if flavor != "auto" else None,
        "report": None,
    }

    found = nvidia_gpus(probe_gpus)
    known, unknown = _identify(host, found, out["warnings"])
    out["gpus"] = [g.name for g in known] + [f"NVIDIA GPU [{p}]" for p in unknown]

    problems: list[str] = []
    gpus_checked = bool(known or unknown)  # compat.check below reads the settings too
    _cudnn_installable(_text(settings.get("cuda_source")), cudnn, gpus_checked, problems)
    driver = _driver_to_install(source, branch, distro, known, problems)
    out["driver"] = driver
    if cuda is None and _text(settings.get("cuda_source")) == "distro" and distro is not None:
        cuda = compat.distro_cuda(distro)  # what the cuda role installs then
    if flavor == "auto" and driver is not None:
        out["kernel_modules"] = compat.resolve_kernel_modules(known, driver.split(".")[0])

    if not known and not unknown:
        out["msg"] = (
            f"{host}: no NVIDIA GPU found"
            + (" that the compatibility data knows" if found else "")
            + "; nothing to check"
        )
        if problems:
            out["failed"] = True
            out["msg"] = f"{host}: " + "; ".join(problems)
        return out

    report = compat.check(
        [g.pci_id for g in known] + unknown,
        driver=driver,
        cuda=cuda,
        cudnn=cudnn,
        kernel_modules=flavor,
    )
    out["checked"] = True
    out["report"] = report.to_dict()
    out["warnings"] += [f"{host}: [{w.field}] {w.message}" for w in report.warnings]
    for p in report.problems:
        problems.append(f"{FIELD_VARS.get(p.field, p.field)} ({p.field}): {p.message}")

    gpu_names = ", ".join(
        sorted({f"{g.name} [{g.pci_id}]" for g in known} | {f"[{p}]" for p in unknown})
    )
    asked = [
        f"{k}={v}"
        for k, v in (
            ("nvidia_driver_source", source),
            ("driver", driver),
            ("nvidia_driver_kernel_modules", flavor),
            ("cuda_version", cuda),
            ("cuda_cudnn_version", cudnn),
        )
        if v is not None
    ]
    if problems:
        out["failed"] = True
        out["msg"] = _failure_msg(host, gpu_names, asked, problems, report)
    else:
        out["msg"] = f"{host}: {gpu_names} work with {', '.join(asked)}"
    return out


def _identify(
    host: str, found: list[dict[str, Any]], warnings: list[str]
) -> tuple[list[compat.Gpu], list[str]]:
    """The probe's NVIDIA GPUs as compat knows them, and the PCI ids of those no
    source knows (brand-new parts); a warning for each GPU not known or not in the data."""
    known: list[compat.Gpu] = []
    unknown: list[str] = []  # NVIDIA PCI ids no source knows: brand-new parts
    for g in found:
        pci_id = str(g.get("pci_id") or "")
        try:
            known.append(compat.find_gpu(pci_id))
        except compat.UnknownGpuError as e:
            unknown.append(pci_id)
            warnings.append(
                f"{host}: {_label(g)} is an NVIDIA GPU that NVIDIA's own lists do not know, "
                f"a brand-new part? ({e}); only its driver branch can be checked"
            )
        except compat.CompatError as e:
            warnings.append(
                f"{host}: {_label(g)} is not in dlsetup's compatibility data ({e}); "
                "its driver and CUDA versions are not checked"
            )
    return known, unknown


def _driver_to_install(
    source: str,
    branch: str | None,
    distro: str | None,
    known: list[compat.Gpu],
    problems: list[str],
) -> str | None:
    """The driver branch or version the role will install: with the distribution's
    own packages, the packaged one (a problem when it contradicts ``branch``)."""
    if source != "distro" or distro is None:
        return branch
    try:
        packaged = compat.distro_default_driver(distro, known)
    except compat.CompatError:
        packaged = None
    dist_drivers = compat.find_distribution(distro).drivers if packaged else ()
    if packaged and dist_drivers:
        # Debian: one driver package; its version is what gets installed
        if branch and branch.split(".")[0] != packaged.split(".")[0]:
            problems.append(
                f"nvidia_driver_branch {branch}: {distro}'s own driver package is "
                f"{packaged}; set nvidia_driver_source: nvidia for R{branch}, or leave "
                "nvidia_driver_branch empty"
            )
        return packaged
    if packaged and not branch:
        return packaged  # Ubuntu: the newest branch that drives these GPUs
    return branch


# The first cuDNN major whose packages the cuda role names (roles/cuda/vars/
# main.yml: libcudnn<N>-cuda-<major>, -dev-, -headers-). NVIDIA packaged
# cuDNN 8 and older as libcudnn8 / libcudnn8-dev, with the CUDA version inside
# the package version (8.9.7.29-1+cuda12.2): not those names.
CUDNN_PACKAGED_FROM = 9


def _cudnn_installable(
    cuda_source: str | None, cudnn: str | None, gpus_checked: bool, problems: list[str]
) -> None:
    """A problem where the cuda role could not name cuDNN's packages: checked on
    every host, GPU or not, since the role asks apt for them either way. The
    version is read by the compat engine's own rule (compat.parse_cudnn); one
    it cannot read is said here only where no GPU is checked (compat.check
    says it otherwise)."""
    if cuda_source != "nvidia" or cudnn is None:
        return
    parsed = compat.parse_cudnn(cudnn)
    if parsed is None:
        if not gpus_checked:
            problems.append(f'cuda_cudnn_version "{cudnn}": expected N or N.M, like "9" or "9.8"')
    elif parsed[0] < CUDNN_PACKAGED_FROM:
        major, first = parsed[0], CUDNN_PACKAGED_FROM
        problems.append(
            f'cuda_cudnn_version "{cudnn}": dlsetup installs cuDNN {first} and newer '
            f"from NVIDIA's repository (libcudnn{first}-cuda-<CUDA major> and its -dev "
            f"and -headers packages); cuDNN {major}'s packages (libcudnn{major}, with the CUDA "
            f"version inside their version) are not handled: ask for cuDNN {first}, "
            f"or leave cuda_cudnn_version empty and install cuDNN {major} yourself"
        )


def _failure_msg(
    host: str, gpu_names: str, asked: list[str], problems: list[str], report: compat.Report
) -> str:
    """The failed task's message: what was asked, each problem, and the newest
    combination that works as host vars (or why none does)."""
    lines = [
        f"{host}: these versions do not work with its GPU(s) {gpu_names} ({', '.join(asked)}):"
    ]
    lines += [f"  - {p}" for p in problems]
    if report.suggestion is not None:
        s = report.suggestion
        lines.append(f"Newest combination that works: {s.describe()}")
        hint = [
            "nvidia_driver_source: nvidia",
            f'nvidia_driver_branch: "{s.driver_branch}"',
            f"nvidia_driver_kernel_modules: {s.kernel_modules}",
            f'cuda_version: "{s.cuda}"',
        ]
        if s.cudnn:
            hint.append(f'cuda_cudnn_version: "{s.cudnn.split("-")[-1].split(".")[0]}"')
        lines.append("  host vars for it: " + ", ".join(hint))
    elif report.suggestion_missing_reason:
        lines.append(f"No combination works: {report.suggestion_missing_reason}")
    return "\n".join(lines)


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False

    def _owner_defaults(self, roles: set[str]) -> dict[str, Any]:
        """The defaults of ``roles`` as Ansible loads them (what include_role does)."""
        play = self._task.get_play()
        manager = self._task.get_variable_manager() or VariableManager(loader=self._loader)
        found: dict[str, Any] = {}
        for name in sorted(roles):
            include = RoleInclude.load(
                name, play=play, variable_manager=manager, loader=self._loader
            )
            role = Role.load(include, play, from_include=True, validate=False, static=False)
            found.update(role.get_default_vars())
        return found

    def settings(self, task_vars: dict[str, Any]) -> dict[str, Any]:
        """SETTINGS as the task's variables have them, else their owner role's default."""
        missing = {owner for key, owner in SETTINGS.items() if key not in task_vars}
        defaults = self._owner_defaults(missing) if missing else {}
        raw = {key: task_vars[key] if key in task_vars else defaults.get(key) for key in SETTINGS}
        templated: dict[str, Any] = self._templar.template(raw)
        return templated

    def run(self, tmp: Any = None, task_vars: dict[str, Any] | None = None) -> dict[str, Any]:
        task_vars = task_vars or {}
        result = super().run(tmp, task_vars)
        args = self._task.args
        settings = self.settings(task_vars)
        probe = args.get("gpus")
        if probe is None:
            probe = (task_vars.get("dl_facts_probe") or {}).get("gpus")
        facts = task_vars.get("ansible_facts") or {}
        distro = args.get("distro") or distro_key(
            facts.get("distribution"), facts.get("distribution_major_version")
        )
        host = str(task_vars.get("inventory_hostname", "?"))
        verdict = decide(host, self._templar.template(probe), settings, distro)
        result.update(verdict)
        result["changed"] = False
        return result
