"""Names users type and PCI ids -> GPU models; distribution names."""

from __future__ import annotations

import difflib
import re

from dlsetup.compat.load import load
from dlsetup.compat.model import (
    NVIDIA_VENDOR_ID,
    AmbiguousGpuError,
    CompatError,
    Distribution,
    Gpu,
    Spec,
    _compact,
    _norm,
)

# ================================================================ GPU lookup


_PCI_RE = re.compile(r"^(?:(?P<vendor>[0-9a-f]{4}):|0x)?(?P<device>[0-9a-f]{4})$")


def _name_keys(g: Gpu) -> set[str]:
    keys = set()
    for n in (g.name, *g.aliases):
        k = _norm(n)
        keys.add(k)
        keys.add(_compact(k))
    return keys


def find_gpu(name_or_pci_id: str) -> Gpu:
    """Resolve a marketing name ("GTX 1080 Ti", "nvidia geforce gtx 1080 ti",
    "NVIDIA H100 80GB HBM3") or a PCI device id ("1b06", "10de:1b06", "0x1b06").

    Raises :class:`CompatError` (naming the input and suggesting close names)
    when nothing matches, :class:`AmbiguousGpuError` when several models do.
    """
    data = load()
    query = name_or_pci_id.strip()
    if not query:
        raise CompatError(
            "empty GPU name: give a name like 'GTX 1080 Ti' or a PCI id like 10de:1b06"
        )
    low = query.lower()

    m = _PCI_RE.match(low)
    if m:
        vendor, device = m.group("vendor"), m.group("device")
        if vendor is not None and vendor != NVIDIA_VENDOR_ID:
            raise CompatError(f"GPU {query!r}: vendor {vendor} is not NVIDIA (10de)")
        for g in data.gpus:
            if device in g.pci_ids:
                return g
        if vendor is not None or low.startswith("0x"):
            raise CompatError(
                f"GPU {query!r}: PCI device id {NVIDIA_VENDOR_ID}:{device} is not in the "
                f"compatibility data ({len(data.gpus)} models; see `dlsetup compat --list-gpus`)"
            )
        # "a100", "4090": not a known id, so try it as a name

    q = _norm(query)
    if not q:
        raise CompatError(f"GPU {query!r}: no model name left after dropping vendor words")
    exact = [g for g in data.gpus if q in _name_keys(g) or _compact(q) in _name_keys(g)]
    if len(exact) == 1:
        return exact[0]
    if len(exact) > 1:
        raise AmbiguousGpuError(query, exact)

    qwords = set(q.split())
    partial = [
        g for g in data.gpus if any(qwords <= set(_norm(n).split()) for n in (g.name, *g.aliases))
    ]
    if len(partial) == 1:
        return partial[0]
    if len(partial) > 1:
        raise AmbiguousGpuError(query, partial)

    names = {_norm(n): n for g in data.gpus for n in (g.name, *g.aliases)}
    close = difflib.get_close_matches(q, list(names), n=4, cutoff=0.5)
    hint = (" Did you mean: " + ", ".join(repr(names[c]) for c in close) + "?") if close else ""
    as_id = f" (nor as PCI id {NVIDIA_VENDOR_ID}:{low})" if m else ""
    raise CompatError(
        f"GPU {query!r} is not in the compatibility data{as_id}.{hint} "
        "A PCI id (lspci -nn: 10de:xxxx) also works; `dlsetup compat --list-gpus` lists all."
    )


def gpu_spec(gpu: str | Gpu) -> Spec:
    """Peak figures (dense FP32 / FP16 / BF16, memory bandwidth, PCIe) for the bench."""
    return (gpu if isinstance(gpu, Gpu) else find_gpu(gpu)).spec


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
