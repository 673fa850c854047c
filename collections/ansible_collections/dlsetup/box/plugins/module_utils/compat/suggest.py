"""The suggestion: the newest combination that works on all the GPUs given."""

from __future__ import annotations

from collections.abc import Sequence

from ansible_collections.dlsetup.box.plugins.module_utils.compat.load import load
from ansible_collections.dlsetup.box.plugins.module_utils.compat.model import (
    Gpu,
    Suggestion,
    _cmp,
    _v,
    _vs,
)
from ansible_collections.dlsetup.box.plugins.module_utils.compat.rules import (
    _branch_supports,
    _cudnn_ok,
    _distinct,
    _flavors_possible,
    _newest_cuda_for,
    _newest_cuda_native,
    _recommended_for,
)


def suggest(gpus: Sequence[Gpu]) -> tuple[Suggestion | None, str | None]:
    """The newest (driver branch, CUDA, cuDNN, kernel modules) that works on all
    ``gpus``; or (None, why) when no single combination does."""
    data = load()
    if not gpus:
        return None, "no GPU given"
    branches = [b for b in data.known_branches if b <= data.newest_suggested_branch]
    usable = [b for b in branches if all(_branch_supports(g, b) for g in gpus)]
    if not usable:
        parts = []
        for g in _distinct(gpus):
            lo = f"R{g.min_branch}" if g.min_branch else "any"
            hi = f"R{g.max_branch}" if g.max_branch else "newest"
            parts.append(f"{g.name} needs {lo} to {hi}")
        return None, "no driver branch supports all these GPUs: " + "; ".join(parts)
    usable = [b for b in usable if _flavors_possible(gpus, b)]
    if not usable:
        need_open = [g.name for g in _distinct(gpus) if g.requires_open_kernel_modules]
        no_open = [g.name for g in _distinct(gpus) if not g.open_kernel_modules]
        return None, (
            "no kernel module flavor drives all these GPUs: the open modules are required by "
            f"{', '.join(need_open)} and unsupported on {', '.join(no_open)}"
        )
    branch = max(usable)

    notes: list[str] = []
    cuda_choice = _newest_cuda_native(data, gpus, None, branch)
    if cuda_choice is None:
        return None, "no CUDA release in the data supports all these GPUs"
    newest_cc = _newest_cuda_for(data, gpus, known_driver=True)
    if newest_cc and _cmp(_v(newest_cc), _v(cuda_choice)) > 0:
        t = data.cuda[newest_cc]
        floor = data.minor_compat_floor.get(t.major)
        if floor is not None and t.major == data.cuda[cuda_choice].major and branch >= floor[0]:
            notes.append(
                f"CUDA {newest_cc} also runs on R{branch} through minor version compatibility "
                f"(driver >= {_vs(floor)}), without PTX JIT; {cuda_choice} is the newest "
                f"toolkit R{branch} supports fully"
            )

    major = data.cuda[cuda_choice].major
    dnn: str | None = None
    for rel in reversed(data.cudnn):
        if _cudnn_ok(data, rel, major, gpus):
            dnn = _vs(rel.last)
            break
    if dnn is None:
        notes.append(f"no cuDNN release in the data supports CUDA {major} on these GPUs")

    flavor = _recommended_for(gpus, branch)
    assert flavor is not None  # branch was filtered on _flavors_possible
    max_arch = [g for g in gpus if g.max_branch is not None and g.max_branch == branch]
    if max_arch:
        note = max_arch[0].arch.support_note
        if note:
            notes.append(note.strip())
    return Suggestion(branch, cuda_choice, dnn, flavor, tuple(notes)), None
