"""Render an expression written in a role the way Ansible does, with the
variables a run would give it: no host is reached, the variables are the input."""

from __future__ import annotations

from typing import Any

from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template


def render(expression: str, variables: dict[str, Any]) -> Any:
    """The value of ``expression`` (trusted, as a role's own text is) under ``variables``."""
    return Templar(loader=DataLoader(), variables=variables).template(trust_as_template(expression))
