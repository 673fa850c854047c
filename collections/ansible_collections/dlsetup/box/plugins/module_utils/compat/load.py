"""Loading: data/compat.yml (the hand-kept tables) and data/gpus.json (the
generated GPU table), beside this package, into one :class:`CompatData`, cached."""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from ansible_collections.dlsetup.box.plugins.module_utils.compat.model import (
    Architecture,
    CcSupport,
    CompatData,
    CompatError,
    CudaToolkit,
    CudnnRelease,
    Distribution,
    DistroDriver,
    Gpu,
    Spec,
    _v,
)

# The data travels with the engine: found beside this file in a checkout, an
# installed wheel and an installed collection alike (Ansible's collection
# loader sets __file__ to the real path too).
DATA_DIR = Path(__file__).resolve().parent / "data"

# ================================================================ loading


def _req(d: Mapping[str, Any], key: str, where: str) -> Any:
    if key not in d:
        raise CompatError(f"compat.yml: {where}: missing {key!r}")
    return d[key]


def _map(x: Any, where: str) -> dict[str, Any]:
    if not isinstance(x, dict):
        raise CompatError(f"compat.yml: {where}: expected a mapping")
    return {str(k): v for k, v in x.items()}


def _list(x: Any, where: str) -> list[Any]:
    if not isinstance(x, list):
        raise CompatError(f"compat.yml: {where}: expected a list")
    return x


def _opt_int(x: Any) -> int | None:
    return None if x is None else int(x)


def _opt_str(x: Any) -> str | None:
    return None if x is None else str(x)


def _spec(s: Mapping[str, Any], where: str) -> Spec:
    def opt(key: str) -> float | None:
        return None if s.get(key) is None else float(s[key])

    return Spec(
        fp32_tflops=float(_req(s, "fp32_tflops", where)),
        fp16_tensor_tflops=opt("fp16_tensor_tflops"),
        bf16_tensor_tflops=opt("bf16_tensor_tflops"),
        memory_bandwidth_gbs=float(_req(s, "memory_bandwidth_gbs", where)),
        memory_gb=float(_req(s, "memory_gb", where)),
        pcie_gen=_opt_int(s.get("pcie_gen")),
        pcie_width=_opt_int(s.get("pcie_width")),
        source=str(_req(s, "source", where)),
    )


def _branch_after(release: str | None, known: Sequence[int]) -> int | None:
    """The first known branch after a driver release ("535.261.03" -> 545): the
    first that can drive a GPU that release's list does not name."""
    if release is None:
        return None
    major = int(release.split(".")[0])
    return next((b for b in known if b > major), major + 1)


def _parse_gpu(raw: Any, archs: Mapping[str, Architecture], known: Sequence[int]) -> Gpu:
    m = _map(raw, "gpus.json: a GPU")
    name = str(_req(m, "name", "gpus.json: a GPU"))
    arch = archs.get(str(_req(m, "arch", name)))
    if arch is None:
        raise CompatError(f"gpus.json: GPU {name}: unknown architecture {m['arch']!r}")
    floors = [arch.min_branch, _opt_int(m.get("min_branch"))]
    floors.append(_branch_after(_opt_str(m.get("absent_from")), known))
    spec = m.get("spec")
    kernelopen = m.get("kernelopen")
    return Gpu(
        name=name,
        pci_ids=tuple(str(p) for p in _list(_req(m, "pci_ids", name), f"{name}.pci_ids")),
        arch=arch,
        compute_capability=_opt_str(m.get("compute_capability")),
        spec=None if spec is None else _spec(_map(spec, f"{name}.spec"), f"{name}.spec"),
        aliases=tuple(str(a) for a in m.get("aliases") or ()),
        first_branch=max((f for f in floors if f is not None), default=None),
        legacy_branch=_opt_int(m.get("legacy_branch")),
        kernelopen=None if kernelopen is None else bool(kernelopen),
        listed_in=tuple(str(r) for r in m.get("listed_in") or ()),
        chips=tuple(str(c) for c in m.get("chips") or ()),
        note=_opt_str(m.get("note")),
    )


def _parse_data(raw: Any, gpu_table: Any = None) -> CompatData:
    """compat.yml (``raw``) and gpus.json (``gpu_table``; None: no GPUs) -> CompatData."""
    top = _map(raw, "top level")

    archs: dict[str, Architecture] = {}
    for key, a_raw in _map(
        _req(_map(top["architectures"], "architectures"), "items", "architectures"),
        "architectures.items",
    ).items():
        a = _map(a_raw, f"architectures.{key}")
        archs[key] = Architecture(
            key=key,
            name=str(_req(a, "name", key)),
            min_branch=_opt_int(a.get("min_branch")),
            max_branch=_opt_int(a.get("max_branch")),
            open_kernel_modules=bool(a["open_kernel_modules"]),
            requires_open_kernel_modules=bool(a["requires_open_kernel_modules"]),
            support_note=_opt_str(a.get("support_note")),
        )

    cuda_sec = _map(top["cuda"], "cuda")
    cuda: dict[str, CudaToolkit] = {}
    for ver, t_raw in _map(cuda_sec["toolkits"], "cuda.toolkits").items():
        t = _map(t_raw, f"cuda.toolkits.{ver}")
        md, lu = t.get("min_driver"), t.get("last_update_min_driver")
        cuda[ver] = CudaToolkit(
            version=ver,
            min_driver=None if md is None else _v(str(md)),
            last_update_min_driver=None if lu is None else _v(str(lu)),
        )
    floors = {
        int(k): _v(str(v))
        for k, v in _map(
            cuda_sec["minor_version_compatibility"], "cuda.minor_version_compatibility"
        ).items()
    }

    cc_support: dict[str, CcSupport] = {}
    for cc, c_raw in _map(
        _map(top["compute_capabilities"], "compute_capabilities")["items"],
        "compute_capabilities.items",
    ).items():
        c = _map(c_raw, f"compute_capabilities.{cc}")
        fc = c.get("first_cuda")
        cc_support[cc] = CcSupport(
            first_cuda=None if fc is None else _v(str(fc)),
            last_cuda_major=_opt_int(c.get("last_cuda_major")),
        )

    dnn_sec = _map(top["cudnn"], "cudnn")
    cudnn: list[CudnnRelease] = []
    for i, r_raw in enumerate(_list(dnn_sec["releases"], "cudnn.releases")):
        r = _map(r_raw, f"cudnn.releases[{i}]")
        cudnn.append(
            CudnnRelease(
                first=_v(str(r["first"])),
                last=_v(str(r["last"])),
                cuda={
                    int(k): _v(str(v))
                    for k, v in _map(r["cuda"], f"cudnn.releases[{i}].cuda").items()
                },
            )
        )
    cudnn.sort(key=lambda r: r.first)
    dnn_min_cc = {
        str(k): _v(str(v))
        for k, v in _map(
            dnn_sec.get("min_version_for_cc") or {}, "cudnn.min_version_for_cc"
        ).items()
    }

    km = _map(top["kernel_modules"], "kernel_modules")
    br = _map(top["driver_branches"], "driver_branches")
    known = tuple(sorted(int(b) for b in _list(br["known"], "driver_branches.known")))
    table = _map(gpu_table if gpu_table is not None else {"gpus": []}, "gpus.json")
    gpus = tuple(_parse_gpu(m, archs, known) for m in _list(table["gpus"], "gpus.json: gpus"))

    distros: dict[str, Distribution] = {}
    for key, d_raw in _map(
        _map(top["distributions"], "distributions")["items"], "distributions.items"
    ).items():
        d = _map(d_raw, f"distributions.{key}")
        drivers = []
        for drv_raw in d.get("drivers") or ():
            drv = _map(drv_raw, f"{key}.drivers")
            flavor = drv.get("kernel_modules")
            drivers.append(
                DistroDriver(
                    package=str(drv["package"]),
                    version=_v(str(drv["version"])),
                    default=bool(drv.get("default", False)),
                    kernel_modules="open"
                    if flavor == "open"
                    else ("proprietary" if flavor == "proprietary" else None),
                    note=_opt_str(drv.get("note")),
                )
            )
        ct = _map(d.get("cuda_toolkit") or {}, f"{key}.cuda_toolkit")
        dn = _map(d.get("cudnn") or {}, f"{key}.cudnn")
        distros[key] = Distribution(
            key=key,
            name=str(d["name"]),
            aliases=tuple(str(a) for a in d.get("aliases") or ()),
            drivers=tuple(drivers),
            driver_branches=tuple(int(b) for b in d.get("driver_branches") or ()),
            cuda=_opt_str(ct.get("cuda")),
            cuda_package=_opt_str(ct.get("package")),
            cuda_package_version=_opt_str(ct.get("version")),
            cudnn=_opt_str(dn.get("cudnn")),
        )

    data = CompatData(
        as_of=str(top.get("as_of", "")),
        sources={
            k: {kk: str(vv) for kk, vv in _map(v, f"sources.{k}").items()}
            for k, v in _map(top["sources"], "sources").items()
        },
        architectures=archs,
        gpus=gpus,
        by_pci_id={p: g for g in gpus for p in g.pci_ids},
        driver_lists=tuple(str(r) for r in table.get("lists") or ()),
        pci_ids_version=_opt_str(table.get("pci_ids_version")),
        unplaced={str(k): str(v) for k, v in _map(table.get("unplaced") or {}, "unplaced").items()},
        gpu_inputs=tuple(_map(e, "gpus.json: inputs") for e in table.get("inputs") or ()),
        cuda=cuda,
        minor_compat_floor=floors,
        cc_support=cc_support,
        cudnn=tuple(cudnn),
        cudnn_min_for_cc=dnn_min_cc,
        open_first_branch=int(km["open_first_branch"]),
        open_default_branch=int(km["open_default_branch"]),
        proprietary_last_branch=int(km["proprietary_last_branch"]),
        known_branches=known,
        newest_suggested_branch=int(br["newest_suggested"]),
        distributions=distros,
    )
    _validate(data)
    return data


def _validate(data: CompatData) -> None:
    seen: dict[str, str] = {}
    for g in data.gpus:
        if g.compute_capability is not None and g.compute_capability not in data.cc_support:
            raise CompatError(
                f"compat.yml: GPU {g.name}: compute capability "
                f"{g.compute_capability} missing from compute_capabilities"
            )
        for p in g.pci_ids:
            if p in seen:
                raise CompatError(f"compat.yml: PCI id {p} on both {seen[p]} and {g.name}")
            seen[p] = g.name
    for key, d in data.distributions.items():
        if d.cuda is not None and d.cuda not in data.cuda:
            raise CompatError(f"compat.yml: distribution {key}: CUDA {d.cuda} not in cuda.toolkits")


def _yaml_load(text: str) -> Any:
    """yaml.safe_load, with libyaml's C loader when PyYAML has it (5-10x faster)."""
    if hasattr(yaml, "CSafeLoader"):
        return yaml.load(text, Loader=yaml.CSafeLoader)
    return yaml.safe_load(text)


def load_path(path: Path, gpus_json: Path | None = None) -> CompatData:
    """Load compat.yml from ``path`` and, when given, the GPU table from ``gpus_json``
    (the generator reads the checkout's compat.yml alone)."""
    table = None if gpus_json is None else json.loads(gpus_json.read_text(encoding="utf-8"))
    return _parse_data(_yaml_load(path.read_text(encoding="utf-8")), table)


@functools.cache
def load() -> CompatData:
    """Load (once) the data shipped beside the engine: compat.yml and gpus.json."""
    return load_path(DATA_DIR / "compat.yml", DATA_DIR / "gpus.json")
