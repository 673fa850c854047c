# The two commands of the README. Both do all set-up on a fresh Debian 12
# machine (as root): packages, Docker engine, base images, venv.
.PHONY: demo test lint unit integration e2e
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
