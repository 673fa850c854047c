# The two commands of the README. Both do all set-up on a fresh Debian 12
# machine (as root): packages, Docker engine, base images, venv.
.PHONY: demo test lint unit integration e2e vm
demo:
	scripts/setup-host
	.venv/bin/dlsetup demo

test:  # every stage, the VM tier last (what .ci/run runs)
	scripts/test

lint:
	scripts/test lint

unit:
	scripts/test unit

integration:
	scripts/test integration

e2e:
	scripts/test e2e

# The virtual-machine tier (tests/vm, docs/vm-tier.md): scripts/setup-host
# installs QEMU and OVMF, the stage builds the VM image when it is missing or
# stale, boots one VM per test and prints its wall time.
vm:
	scripts/test vm
