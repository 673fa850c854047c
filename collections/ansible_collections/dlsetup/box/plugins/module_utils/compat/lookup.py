"""Names users type and PCI ids -> GPU models; distribution names."""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace

from ansible_collections.dlsetup.box.plugins.module_utils.compat.load import load
from ansible_collections.dlsetup.box.plugins.module_utils.compat.model import (
    NVIDIA_VENDOR_ID,
    AmbiguousGpuError,
    CompatData,
    CompatError,
    Distribution,
    Gpu,
    Spec,
    UnknownGpuError,
    _compact,
    _norm,
    _v,
)

# ================================================================ GPU lookup


_PCI_RE = re.compile(r"^(?:(?P<vendor>[0-9a-f]{4}):|0x)?(?P<device>[0-9a-f]{4})$")


@dataclass(frozen=True)
class _Named:
    gpu: Gpu
    keys: frozenset[str]  # normalised names, with and without spaces
    words: tuple[frozenset[str], ...]  # the words of each name


_INDEX: dict[int, tuple[CompatData, list[_Named]]] = {}


def _index(data: CompatData) -> list[_Named]:
    """The name index of ``data``'s GPUs, built on the first name lookup."""
    hit = _INDEX.get(id(data))
    if hit is None or hit[0] is not data:
        named = []
        for g in data.gpus:
            norms = [_norm(n) for n in (g.name, *g.aliases)]
            keys = frozenset(norms) | frozenset(_compact(k) for k in norms)
            named.append(_Named(g, keys, tuple(frozenset(k.split()) for k in norms)))
        hit = _INDEX[id(data)] = (data, named)
    return hit[1]


def _for_id(g: Gpu, device: str) -> Gpu:
    """The model with the PCI id asked for first (so reports name the user's id)."""
    return replace(g, pci_ids=(device, *(p for p in g.pci_ids if p != device)))


def merge_models(models: Sequence[Gpu]) -> Gpu:
    """Several models of one name (the RTX 3060's device ids, some added to
    NVIDIA's list later) as one answer that holds for each: the latest first
    branch, the earliest last branch, open modules only if all take them."""
    gpus = sorted(models, key=lambda g: g.spec is None)  # the hand-kept entry leads
    first = gpus[0]
    if len(gpus) == 1:
        return first
    firsts = [g.first_branch for g in gpus if g.first_branch is not None]
    legacy = [g.legacy_branch for g in gpus if g.legacy_branch is not None]
    specs = {g.spec for g in gpus if g.spec is not None}
    return Gpu(
        name=first.name,
        pci_ids=tuple(dict.fromkeys(p for g in gpus for p in g.pci_ids)),
        arch=first.arch,
        compute_capability=first.compute_capability,
        spec=specs.pop() if len(specs) == 1 else None,
        aliases=tuple(dict.fromkeys(a for g in gpus for a in g.aliases if a != first.name)),
        first_branch=max(firsts) if firsts else None,
        legacy_branch=min(legacy) if legacy else None,
        kernelopen=(
            None
            if all(g.kernelopen is None for g in gpus)
            else all(g.open_kernel_modules for g in gpus)
        ),
        listed_in=tuple(sorted({r for g in gpus for r in g.listed_in}, key=_v)),
        chips=tuple(sorted({c for g in gpus for c in g.chips})),
        note=first.note,
    )


def _name_matches(data: CompatData, q: str) -> list[Gpu]:
    """The models a normalised name matches: exactly, else those whose name
    holds all its words with the fewest others ("3060" -> "RTX 3060")."""
    index = _index(data)
    wanted = {q, _compact(q)}
    exact = [n.gpu for n in index if wanted & n.keys]
    by_name = [g for g in exact if wanted & {_norm(g.name), _compact(_norm(g.name))}]
    if by_name or exact:  # a model's own name before another's alias
        return by_name or exact
    qwords = set(q.split())
    scored: list[tuple[int, Gpu]] = []
    for n in index:
        extra = [len(w) - len(qwords) for w in n.words if qwords <= w]
        if extra:
            scored.append((min(extra), n.gpu))
    best = min((e for e, _ in scored), default=0)
    return [g for e, g in scored if e == best]


def _resolve(query: str, found: Sequence[Gpu]) -> Gpu:
    """One model out of a name's matches: NVIDIA-listed ones before inferred
    ones; models of the same name and architecture merge; else ambiguous."""
    listed = [g for g in found if not g.inferred] or list(found)
    if len(listed) == 1:
        return listed[0]
    names = {_norm(g.name) for g in listed}
    kinds = {(g.arch.key, g.compute_capability) for g in listed}
    if len(names) == 1 and len(kinds) == 1:
        return merge_models(listed)
    raise AmbiguousGpuError(query, listed)


def find_gpu(name_or_pci_id: str) -> Gpu:
    """Resolve a marketing name ("RTX 3060", "3060", "GeForce RTX 3060 Ti", "A4000",
    "NVIDIA H100 80GB HBM3") or a PCI device id ("2504", "10de:2504", "0x2504").

    Raises :class:`UnknownGpuError` for an NVIDIA PCI id that no source knows,
    :class:`CompatError` (naming the input and suggesting close names) when
    nothing matches, :class:`AmbiguousGpuError` when several models do.
    """
    data = load()
    query = name_or_pci_id.strip()
    if not query:
        raise CompatError("empty GPU name: give a name like 'RTX 3060' or a PCI id like 10de:2504")
    low = query.lower()
    m = _PCI_RE.match(low)
    if m:
        vendor, device = m.group("vendor"), m.group("device")
        if vendor is not None and vendor != NVIDIA_VENDOR_ID:
            raise CompatError(f"GPU {query!r}: vendor {vendor} is not NVIDIA (10de)")
        bare_number = vendor is None and low.isdigit()  # "1080": a model number or an id?
        named = _name_matches(data, low) if bare_number else []
        if named:
            return _resolve(query, named)  # the model users mean, not 10de:1080 (GTX 580)
        if device in data.by_pci_id:
            return _for_id(data.by_pci_id[device], device)
        if vendor is not None or low.startswith("0x"):
            raise UnknownGpuError(query, device, _unknown_message(data, device))
        # "4090": not a known id, so try it as a name
    q = _norm(query)
    if not q:
        raise CompatError(f"GPU {query!r}: no model name left after dropping vendor words")
    found = _name_matches(data, q)
    if found:
        return _resolve(query, found)
    names = {_norm(n): n for g in data.gpus for n in (g.name, *g.aliases)}
    close = difflib.get_close_matches(q, list(names), n=4, cutoff=0.6)
    hint = (" Did you mean: " + ", ".join(repr(names[c]) for c in close) + "?") if close else ""
    as_id = f" (nor as PCI id {NVIDIA_VENDOR_ID}:{low})" if m else ""
    raise CompatError(
        f"GPU {query!r} is not in the compatibility data{as_id}.{hint} "
        "A PCI id (lspci -nn: 10de:xxxx) also works; `dlsetup compat --list-gpus TEXT` "
        "lists the GPUs whose name holds TEXT."
    )


def _unknown_message(data: CompatData, device: str) -> str:
    lists = ", ".join(f"R{r.split('.')[0]}" for r in data.driver_lists) or "none"
    if device in data.unplaced:
        return (
            f"PCI id {NVIDIA_VENDOR_ID}:{device} ({data.unplaced[device]} in pci.ids) is in none "
            f"of NVIDIA's supported-GPU lists (drivers {lists}) and its chip is of an "
            "architecture this data has no rules for yet: a part newer than this data"
        )
    return (
        f"PCI id {NVIDIA_VENDOR_ID}:{device} is in neither NVIDIA's supported-GPU lists "
        f"(drivers {lists}) nor pci.ids {data.pci_ids_version or ''}".rstrip()
        + ": a part newer than this data (scripts/update-compat-data --fetch refreshes it)"
    )


def gpu_spec(gpu: str | Gpu) -> Spec | None:
    """Peak figures (dense FP32 / FP16 / BF16, memory bandwidth, PCIe) for the bench;
    None for a GPU without hand-kept figures."""
    return (gpu if isinstance(gpu, Gpu) else find_gpu(gpu)).spec


def distro_key(distribution: str | None, major: str | None) -> str | None:
    """('Debian', '12') -> 'debian-12'; Ubuntu's major '24' -> 'ubuntu-24.04'
    (Ansible's distribution and distribution_major_version facts)."""
    if not distribution or not major:
        return None
    name = distribution.lower()
    if name == "ubuntu" and "." not in major:
        major = f"{major}.04"
    return f"{name}-{major}"


def distro_cuda(distro: str | None) -> str | None:
    """The CUDA version ("11.8") of the distribution's own nvidia-cuda-toolkit,
    for a key such as 'debian-12'; None where the data has no such distribution
    or no toolkit for it."""
    if distro is None:
        return None
    try:
        return find_distribution(distro).cuda
    except CompatError:
        return None


def find_distribution(name: str) -> Distribution:
    """Resolve 'debian-12', 'bookworm', 'ubuntu-24.04', 'noble', ..."""
    data = load()
    q = name.strip().lower().replace(" ", "-")
    for d in data.distributions.values():
        if q == d.key or q in (a.lower() for a in d.aliases):
            return d
    raise CompatError(
        f"distribution {name!r} is not in the data (known: {', '.join(data.distributions)})"
    )
