# The two commands of the README. Both do all set-up on a fresh Debian 12
# machine (as root): packages, Docker engine, base images, venv.
.PHONY: demo test lint unit integration e2e vm
demo:
	scripts/setup-host
	.venv/bin/dlsetup demo

test:
	scripts/test

lint:
	scripts/test lint

unit:
	scripts/test unit

integration:
	scripts/test integration

e2e:
	scripts/test e2e

# The virtual-machine tier (tests/vm, docs/vm-tier.md): builds the VM image when
# it is missing or stale, then boots one VM per test; prints its wall time.
# Needs qemu-system-x86 ovmf qemu-utils mtools (see docs/vm-tier.md).
vm:
	@t0=$$(date +%s); \
	.venv/bin/python -m dlsetup.vmbox image && \
	.venv/bin/python -m pytest -q -p no:cacheprovider -s tests/vm; \
	rc=$$?; echo "VM tier wall time: $$(( $$(date +%s) - t0 )) s"; exit $$rc
