"""``dlsetup compat``: the command line over the compatibility engine.

The engine (model, load, lookup, rules, suggest, check) and its data live in
the collection dlsetup.box, ``plugins/module_utils/compat``, where the
preflight action plugin imports it without this package; dlsetup's callers
import it from there by name too (``from ansible_collections.dlsetup.box.plugins
.module_utils import compat``). This package adds:

    cli       ``dlsetup compat`` (arguments, text report, --list-gpus)
    generate  what scripts/update-compat-data writes (gpus.json, cuda_driver_table.py,
              the target-side copies of the GPU discovery routine)
"""
