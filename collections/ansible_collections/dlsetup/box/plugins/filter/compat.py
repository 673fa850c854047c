"""Filters over the compatibility data (plugins/module_utils/compat) for the
roles: a fact the data holds is read there at run time, not copied into a
role's vars.

    {{ ansible_facts['distribution']
       | dlsetup.box.distro_cuda(ansible_facts['distribution_major_version']) }}
"""

from __future__ import annotations

from typing import Any

from ansible_collections.dlsetup.box.plugins.module_utils import compat


def distro_cuda(distribution: str, major: Any) -> str:
    """('Debian', '12') -> '11.8': the CUDA version of the distribution's own
    nvidia-cuda-toolkit; '' where the data does not know the distribution
    (the cuda role then installs it without a version to check)."""
    return compat.distro_cuda(compat.distro_key(distribution, str(major))) or ""


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"distro_cuda": distro_cuda}
