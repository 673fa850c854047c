"""The ``dlsetup`` command line.

Each subcommand is one function that maps its arguments to a
:class:`~dlsetup.runner.RunSpec` (playbook, extravars, tags, limit); the
provisioning logic lives in the playbooks and roles, never here.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

from dlsetup import __version__, localbox
from dlsetup.events import EventCollector
from dlsetup.exitcodes import ExitCode
from dlsetup.inventory import (
    InventoryError,
    add_inventory_argument,
    demo_inventory_path,
    parse_extravars,
    resolve_target,
)
from dlsetup.runner import RunSpec

# The demo box's container; tests give theirs another name.
DEMO_BOX = os.environ.get("DLSETUP_DEMO_BOX", "dlsetup-demo")
DEMO_HOST = "demo"


class BadInput(ValueError):
    """Bad arguments: exit 2, nothing changed anywhere."""


# ----------------------------------------------------------------- parsing helpers


def _csv(values: list[str] | None) -> tuple[str, ...]:
    out: list[str] = []
    for v in values or []:
        out += [t.strip() for t in v.split(",") if t.strip()]
    return tuple(out)


class _Formatter(argparse.RawDescriptionHelpFormatter):
    pass


def _add_target_args(p: argparse.ArgumentParser, host_required: bool = True) -> None:
    p.add_argument(
        "--host",
        required=host_required,
        metavar="PATTERN",
        help="a host, a group or an Ansible pattern (e.g. 'lab:!gpu3'); "
        "a name in no inventory is taken as an SSH address ([user@]host)",
    )
    add_inventory_argument(p)


def _add_run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--tags",
        action="append",
        metavar="T",
        help="only these stages (comma list): disks, nvme, driver, cuda, docker, "
        "nvidia-container, facts",
    )
    p.add_argument("--skip-tags", action="append", metavar="T", help="skip these stages")
    p.add_argument(
        "-e",
        "--extra-vars",
        action="append",
        metavar="KEY=VAL|@file",
        help="extra variables, as ansible-playbook's -e (repeatable)",
    )
    p.add_argument("--forks", type=int, metavar="N", help="hosts provisioned in parallel")
    p.add_argument(
        "--verify-all",
        action="store_true",
        help="walk every task of every stage; by default a stage that is provably unchanged "
        "since the box's last converged run (its settings, dlsetup's roles and the files it "
        "manages, compared in one read) leaves its tasks out",
    )
    p.add_argument("--json", action="store_true", help="print one JSON document instead of tables")
    p.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="more Ansible output in failures (-vvv for connection debugging)",
    )


# ----------------------------------------------------------------- subcommands -> RunSpec


def spec_provision(args: argparse.Namespace, target_sources: list[str], limit: str) -> RunSpec:
    extravars = parse_extravars(args.extra_vars)
    if getattr(args, "allow_reboot_local", False):
        extravars["dlsetup_allow_reboot_local"] = True
    if getattr(args, "verify_all", False):
        extravars["dlsetup_verify_all"] = True
    return RunSpec(
        playbook="site.yml",
        inventories=tuple(target_sources),
        limit=limit,
        extravars=extravars,
        tags=_csv(args.tags),
        skip_tags=_csv(args.skip_tags),
        check=bool(getattr(args, "check", False)),
        diff=bool(getattr(args, "diff", False)),
        verbosity=args.verbose,
        forks=args.forks,
    )


def spec_plan(args: argparse.Namespace, target_sources: list[str], limit: str) -> RunSpec:
    base = spec_provision(args, target_sources, limit)
    return RunSpec(**{**base.__dict__, "check": True, "diff": True})


def spec_facts(args: argparse.Namespace, target_sources: list[str], limit: str) -> RunSpec:
    return RunSpec(
        playbook="facts.yml",
        inventories=tuple(target_sources),
        limit=limit,
        tags=("facts",),
        verbosity=args.verbose,
    )


def _gpucheck_dir() -> str:
    """The gpucheck package the roles copy to the hosts: the one this CLI runs."""
    from dlsetup import gpucheck  # noqa: PLC0415

    return str(Path(gpucheck.__file__).resolve().parent)


def spec_smoke(args: argparse.Namespace, target_sources: list[str], limit: str) -> RunSpec:
    extravars: dict[str, Any] = {"gpu_smoke_test_gpucheck_dir": _gpucheck_dir()}
    if args.container_image:
        extravars["gpu_smoke_test_container_image"] = args.container_image
    if args.capture:
        extravars["gpu_smoke_test_capture_dir"] = str(Path(args.capture).resolve())
    return RunSpec(
        playbook="smoke.yml",
        inventories=tuple(target_sources),
        limit=limit,
        extravars=extravars,
        tags=("smoke",),
        verbosity=args.verbose,
    )


def spec_bench(args: argparse.Namespace, target_sources: list[str], limit: str) -> RunSpec:
    from dlsetup import bench_report  # noqa: PLC0415

    extravars: dict[str, Any] = {
        "gpu_smoke_test_gpucheck_dir": _gpucheck_dir(),
        "gpu_smoke_test_bench_peaks": bench_report.peaks_table(),
        "gpu_smoke_test_bench_fetch_dir": str(Path(args.report).resolve()),
    }
    if args.container_image:
        extravars["gpu_smoke_test_bench_container_image"] = args.container_image
    if args.cifar_dir:
        extravars["gpu_smoke_test_bench_cifar_dir"] = args.cifar_dir
    if args.nvme_device:
        extravars["gpu_smoke_test_bench_nvme_device"] = args.nvme_device
    return RunSpec(
        playbook="bench.yml",
        inventories=tuple(target_sources),
        limit=limit,
        extravars=extravars,
        tags=("bench",),
        verbosity=args.verbose,
    )


# ----------------------------------------------------------------- running


def _execute(spec: RunSpec, args: argparse.Namespace, mode: str = "provision") -> int:
    from dlsetup import report, runner  # noqa: PLC0415  (keeps --help fast)

    collector = EventCollector()
    progress = report.Progress(collector, enabled=not args.json)
    with progress:
        outcome = runner.run(spec, progress)
    code = collector.exit_code(outcome.status)
    if not collector.hosts and outcome.status not in ("canceled", "successful"):
        # Ansible stopped before any host event: a syntax or inventory error.
        msg = outcome.stdout_tail.strip() or f"ansible-playbook ended with status {outcome.status}"
        if args.json:
            report.print_json(
                {
                    "status": outcome.status,
                    "exit_code": ExitCode.BAD_INPUT,
                    "error": msg,
                    "hosts": {},
                }
            )
        else:
            print(f"error: Ansible could not start the run:\n{msg}", file=sys.stderr)
        return ExitCode.BAD_INPUT
    doc = collector.to_dict(outcome.status)
    doc["mode"] = mode
    if mode == "smoke":
        smoke = {h: hs.reports.get("gpu_smoke_test_report") for h, hs in collector.hosts.items()}
        doc["smoke"] = smoke
    if mode == "bench":
        return _bench_outcome(collector, doc, args, code)
    if args.json:
        report.print_json(doc)
        return code
    out = report.console()
    if mode == "smoke":
        out.print(report.smoke_table(doc["smoke"], collector))
    if mode == "facts":
        out.print(
            report.facts_table(
                {h: hs.reports.get("dl_facts_report", {}) for h, hs in collector.hosts.items()}
            )
        )
    if mode == "plan":
        out.print(report.plan_table(collector))
    out.print(
        report.summary_table(
            collector,
            outcome.status,
            title="Plan summary (nothing was changed)" if mode == "plan" else "Summary",
        )
    )
    return code


def _with_target(
    args: argparse.Namespace,
    build: Callable[[argparse.Namespace, list[str], str], RunSpec],
    mode: str,
) -> int:
    with tempfile.TemporaryDirectory(prefix="dlsetup-") as tmp:
        target = resolve_target(args.host, args.inventory, Path(tmp))
        spec = build(args, target.sources, target.limit)
        return _execute(spec, args, mode)


def cmd_provision(args: argparse.Namespace) -> int:
    return _with_target(args, spec_provision, "provision")


def cmd_plan(args: argparse.Namespace) -> int:
    return _with_target(args, spec_plan, "plan")


def cmd_facts(args: argparse.Namespace) -> int:
    args.json = bool(args.json)
    return _with_target(args, spec_facts, "facts")


def cmd_smoke(args: argparse.Namespace) -> int:
    """The smoke test on hosts (--host, through its role), on this machine (--local)
    or from a support bundle (--replay)."""
    if args.host and not (args.local or args.replay):
        args.verbose = getattr(args, "verbose", 0)
        return _with_target(args, spec_smoke, "smoke")
    if not (args.local or args.replay):
        raise BadInput(
            "smoke: expected --host PATTERN, --local (this machine) or --replay DIR (a bundle)"
        )
    from dlsetup.gpucheck import cli as gpucheck_cli  # noqa: PLC0415

    argv: list[str] = []
    if args.json:
        argv.append("--json")
    if args.capture:
        argv += ["--capture", args.capture]
    if args.replay:
        argv += ["--replay", args.replay]
    if args.container_image:
        argv += ["--container-image", args.container_image]
    return int(gpucheck_cli.main(argv))


def _bench_outcome(
    collector: EventCollector, doc: dict[str, Any], args: argparse.Namespace, code: int
) -> int:
    """After the bench playbook: write the report from the fetched JSON, pick the exit code."""
    from dlsetup import bench_report, report  # noqa: PLC0415

    report_dir = Path(args.report).resolve()
    states = {h: hs.reports.get("gpu_smoke_test_bench_report") for h, hs in collector.hosts.items()}
    raws: dict[str, dict[str, Any]] = {}
    for host, state in sorted(states.items()):
        if not isinstance(state, dict) or state.get("missing", True):
            continue  # no bench ran there in this run: an old bench.json is not reported
        raw = bench_report.read_raw(report_dir / host / "bench.json")
        if raw is not None:
            raws[host] = raw
    missing = {h: s for h, s in states.items() if isinstance(s, dict) and s.get("missing")}
    written = bench_report.write_report(raws, report_dir) if raws else {}
    doc["bench"] = {"report_dir": str(report_dir), "files": [str(p) for p in written.values()]}
    doc["bench"]["hosts"] = {h: bench_report.summarize(r) for h, r in raws.items()}
    if missing and code != ExitCode.OK:
        code = ExitCode.BAD_INPUT
        doc["exit_code"] = code
    if args.json:
        report.print_json(doc)
        return code
    out = report.console()
    for host, raw in sorted(raws.items()):
        out.print(bench_report.markdown_host(host, raw))
    if written:
        out.print(f"report: {written['md']} (+ report.json and charts in {report_dir})")
    out.print(report.summary_table(collector, doc["status"]))
    if missing:
        out.print("The bench needs PyTorch with CUDA on the host, or an image with it: see above.")
    return code


def cmd_bench(args: argparse.Namespace) -> int:
    """The bench on hosts (--host, through Ansible) or on this machine (--local)."""
    if args.local == bool(args.host):
        raise BadInput("bench: expected --host PATTERN or --local (this machine)")
    if args.host:
        return _with_target(args, spec_bench, "bench")
    from dlsetup import bench_report, report  # noqa: PLC0415

    result = bench_report.run_local(
        python=args.python,
        cifar_dir=args.cifar_dir,
        nvme_device=args.nvme_device,
        container_image=args.container_image,
    )
    if result.raw is None:
        print(f"dlsetup bench: {result.error}", file=sys.stderr)
        if args.json:
            report.print_json({"exit_code": result.rc, "error": result.error})
        return result.rc
    host = result.host
    report_dir = Path(args.report).resolve()
    (report_dir / host).mkdir(parents=True, exist_ok=True)
    (report_dir / host / "bench.json").write_text(json.dumps(result.raw, indent=2) + "\n")
    written = bench_report.write_report({host: result.raw}, report_dir)
    if args.json:
        report.print_json(
            {
                "exit_code": ExitCode.OK,
                "bench": {
                    "report_dir": str(report_dir),
                    "files": [str(p) for p in written.values()],
                    "hosts": {host: bench_report.summarize(result.raw)},
                },
            }
        )
        return ExitCode.OK
    out = report.console()
    out.print(bench_report.markdown_host(host, result.raw))
    out.print(f"report: {written['md']} (+ report.json and charts in {report_dir})")
    return ExitCode.OK


def demo_inventory(container: str = DEMO_BOX) -> dict[str, Any]:
    """The demo box as an inventory: a systemd container reached with docker exec."""
    return {
        "all": {
            "children": {
                "dlsetup_demo": {
                    "hosts": {
                        DEMO_HOST: {
                            "ansible_connection": "community.docker.docker",
                            "ansible_host": container,
                            "ansible_python_interpreter": "/usr/bin/python3",
                            # NVIDIA's libnvidia-container repository is on the
                            # internet, which the demo must not need: Docker
                            # only, and the summary says so. With a mirror:
                            #   dlsetup demo -e container_runtime_nvidia_toolkit=true \
                            #     -e container_runtime_nvidia_repo_url=http://mirror/...
                            "container_runtime_nvidia_toolkit": False,
                        }
                    }
                }
            }
        }
    }


def cmd_demo(args: argparse.Namespace) -> int:
    inv = demo_inventory_path()
    if args.destroy:
        removed = localbox.remove_box(DEMO_BOX) if localbox.engine_answers() else False
        localbox._run(["docker", "volume", "rm", "-f", f"{DEMO_BOX}-docker"], capture_output=True)
        inv.unlink(missing_ok=True)
        print("demo box removed" if removed else "no demo box to remove", file=sys.stderr)
        return ExitCode.OK
    localbox.ensure_engine()
    for line in localbox.build_images(["debian12-systemd"]):
        print(f"image {line}", file=sys.stderr)
    state = localbox.ensure_box(
        localbox.BoxSpec(
            name=DEMO_BOX,
            hostname=DEMO_HOST,
            # Docker inside the box keeps its images on a volume: overlayfs cannot
            # sit on the container's own overlay root.
            volumes=[f"{DEMO_BOX}-docker:/var/lib/docker"],
        )
    )
    print(f"demo box {DEMO_BOX}: {state}", file=sys.stderr)
    inv.parent.mkdir(parents=True, exist_ok=True)
    inv.write_text(
        "# Written by `dlsetup demo`; removed by `dlsetup demo --destroy`.\n"
        + yaml.safe_dump(demo_inventory())
    )
    args.host = DEMO_HOST
    args.inventory = [str(inv)]
    return cmd_provision(args)


# ----------------------------------------------------------------- parser

EXAMPLES = {
    "provision": """\
        examples:
          dlsetup provision --host mybox                  # everything, on one box
          dlsetup provision --host lab --forks 8          # a group of boxes in parallel
          dlsetup provision --host 10.0.0.7               # an address in no inventory, over SSH
          dlsetup provision --host mybox --tags driver,cuda
          dlsetup provision --host mybox -e nvidia_driver_branch=580
          dlsetup provision --host mybox --verify-all     # walk every task, even on a converged box
        """,
    "plan": """\
        Runs the provision in check + diff mode and lists, per host, what would change:
        packages, files, disk actions, and whether a reboot would follow. Changes nothing.

        examples:
          dlsetup plan --host mybox
          dlsetup plan --host mybox --tags disks      # just the disk layout
        """,
    "facts": """\
        Installs dlsetup's local facts on the host (/etc/ansible/facts.d/dl.fact) and
        shows what they found: GPUs and their PCIe links, NVMe drives, disks by id,
        Secure Boot, container/VM, CPU, RAM, kernel, driver/CUDA/cuDNN versions.

        examples:
          dlsetup facts --host mybox
          dlsetup facts --host lab --json > lab-facts.json
        """,
    "demo": """\
        Creates a local throw-away box (a systemd container from a Debian 12 image that
        dlsetup builds with debootstrap and keeps) and provisions it with the full site.
        Steps that need a real GPU, a kernel module or a reboot are reported as skipped.

        examples:
          dlsetup demo              # create (or reuse) the box and provision it
          dlsetup demo              # again: changes nothing
          dlsetup facts --host demo
          dlsetup demo --destroy
        """,
    "smoke": """\
        examples:
          dlsetup smoke --local                       # on the box itself
          dlsetup smoke --local --capture bundle/     # and keep a support bundle
          dlsetup smoke --replay bundle/ --json       # diagnose a bundle offline
          dlsetup smoke --host lab --capture bundles/ # on hosts; bundles/<host>/ each
        """,
    "bench": """\
        GEMM, memory and PCIe copy bandwidth, NVMe read and the CIFAR-10 tutorial CNN,
        each against its limit; report.json, report.md and PNG charts in --report DIR.

        examples:
          dlsetup bench --host mybox --report bench/
          dlsetup bench --host mybox --container-image pytorch/pytorch:latest
          dlsetup bench --local --python /opt/torch/bin/python3
        """,
}


_AddParser = Callable[[str, str], argparse.ArgumentParser]


def _add_smoke_parser(add: _AddParser) -> None:
    p = add("smoke", "GPU smoke test that proves the whole stack works (exit 4 if a check fails)")
    _add_target_args(p, host_required=False)
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--local", action="store_true", help="run on this machine, without Ansible")
    mode.add_argument("--replay", metavar="DIR", help="diagnose offline from a support bundle")
    p.add_argument(
        "--capture",
        metavar="DIR",
        help="save every input the checks read into a support bundle "
        "(with --host: fetched to DIR/<host>/)",
    )
    p.add_argument(
        "--container-image",
        metavar="IMG",
        help="a local image with nvidia-smi for the container runtime check",
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("-v", "--verbose", action="count", default=0)
    p.set_defaults(func=cmd_smoke)


def _add_bench_parser(add: _AddParser) -> None:
    p = add("bench", "how fast the box is against what its parts should reach")
    _add_target_args(p, host_required=False)
    p.add_argument("--local", action="store_true", help="run on this machine, without Ansible")
    p.add_argument(
        "--report",
        metavar="DIR",
        default="dlsetup-bench",
        help="where report.json, report.md, the charts and each host's raw JSON go "
        "(default ./dlsetup-bench)",
    )
    p.add_argument(
        "--cifar-dir",
        metavar="DIR",
        help="CIFAR-10 binary batches on the target (default: synthetic CIFAR-shaped data)",
    )
    p.add_argument("--nvme-device", metavar="DEV", help="NVMe namespace to read with fio")
    p.add_argument(
        "--container-image",
        metavar="IMG",
        help="an image with PyTorch (CUDA) to run the bench in when the target has no torch",
    )
    p.add_argument(
        "--python",
        metavar="PY",
        default="python3",
        help="with --local: the interpreter whose torch runs the bench (default python3)",
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")
    p.add_argument("-v", "--verbose", action="count", default=0)
    p.set_defaults(func=cmd_bench)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dlsetup",
        formatter_class=_Formatter,
        description="Turn a freshly installed Linux box into a working deep-learning server.",
        epilog=textwrap.dedent("""\
            stages (tags): disks, nvme, driver, cuda, docker, nvidia-container, facts
            exit codes: 0 ok, 1 a task failed, 2 bad input (nothing changed),
                        3 host unreachable, 4 smoke test failed, 130 interrupted

            start with:  dlsetup demo           (a local throw-away box)
                         dlsetup plan --host mybox
            """),
    )
    parser.add_argument("--version", action="version", version=f"dlsetup {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, help_: str) -> argparse.ArgumentParser:
        return sub.add_parser(
            name,
            help=help_,
            description=help_,
            formatter_class=_Formatter,
            epilog=textwrap.dedent(EXAMPLES.get(name, "")),
        )

    p = add("provision", "provision hosts with the whole site (or the stages in --tags)")
    _add_target_args(p)
    _add_run_args(p)
    p.add_argument("--check", action="store_true", help="Ansible check mode: change nothing")
    p.add_argument("--diff", action="store_true", help="show file differences")
    p.add_argument(
        "--allow-reboot-local",
        action="store_true",
        help="allow rebooting the machine dlsetup runs on (off: the run stops and "
        "says to reboot and run again)",
    )
    p.set_defaults(func=cmd_provision)

    p = add("plan", "show what provision would change, changing nothing")
    _add_target_args(p)
    _add_run_args(p)
    p.set_defaults(func=cmd_plan)

    p = add("facts", "show what dlsetup finds on hosts (GPUs, disks, NVMe, versions)")
    _add_target_args(p)
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")
    p.add_argument("-v", "--verbose", action="count", default=0)
    p.set_defaults(func=cmd_facts)

    p = add("demo", "provision a local throw-away box (the embedded default)")
    _add_run_args(p)
    p.add_argument("--destroy", action="store_true", help="remove the demo box")
    p.set_defaults(func=cmd_demo, check=False, diff=False)

    _add_smoke_parser(add)

    from dlsetup.compat import cli as compat  # noqa: PLC0415

    p = add(
        "compat",
        "check that a GPU, driver, CUDA and cuDNN combination fits (exit 0 fits, 2 does not)",
    )
    compat.add_arguments(p)
    p.set_defaults(func=compat.run)

    _add_bench_parser(add)

    from dlsetup import installer  # noqa: PLC0415

    p = add(
        "installer-config",
        "the storage part of an OS installer's answers that reinstalls Linux, keeping the rest",
    )
    installer.add_arguments(p)
    p.set_defaults(func=installer.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except (InventoryError, BadInput) as exc:
        print(f"dlsetup: error: {exc}", file=sys.stderr)
        return ExitCode.BAD_INPUT
    except localbox.LocalBoxError as exc:
        print(f"dlsetup: error: {exc}", file=sys.stderr)
        return ExitCode.BAD_INPUT
    except KeyboardInterrupt:
        print(
            "\nInterrupted. Every step is safe to repeat: run the same command again to resume.",
            file=sys.stderr,
        )
        return ExitCode.INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
