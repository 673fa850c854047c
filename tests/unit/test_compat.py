"""Tests of the compat engine (the collection's plugins/module_utils/compat), its
data and `dlsetup compat`."""

from __future__ import annotations

import argparse
import json

import pytest
import yaml
from ansible_collections.dlsetup.box.plugins.module_utils.compat import (
    AmbiguousGpuError,
    CompatError,
    check,
    find_distribution,
    find_gpu,
    gpu_spec,
    load,
    recommended_kernel_modules,
    suggest,
)
from ansible_collections.dlsetup.box.plugins.module_utils.compat.load import DATA_DIR
from ansible_collections.dlsetup.box.plugins.module_utils.compat.model import _vs

from dlsetup.compat import cli as compat_cli
from dlsetup.compat.cli import cli, format_report

# ------------------------------------------------------------------ the data file


def _raw() -> dict:
    text = (DATA_DIR / "compat.yml").read_text(encoding="utf-8")
    return yaml.safe_load(text)


def test_data_loads_from_package_resources_and_is_cached():
    data = load()
    assert load() is data
    assert len(data.gpus) >= 40
    assert {
        "kepler",
        "maxwell",
        "pascal",
        "volta",
        "turing",
        "ampere",
        "ada",
        "hopper",
        "blackwell",
    } <= set(data.architectures)


def test_every_section_names_sources_that_exist():
    raw = _raw()
    sources = raw["sources"]
    sections = [k for k in raw if k not in {"schema_version", "as_of", "sources"}]
    assert sections, "no data sections"
    for section in sections:
        named = raw[section]["source"]
        assert named, f"{section} names no source"
        for key in named:
            assert key in sources, f"{section} cites unknown source {key}"
            assert sources[key]["title"] and sources[key]["url"].startswith("https://")


def test_every_hand_kept_spec_is_sourced_and_pci_ids_are_valid():
    seen: set[str] = set()
    with_spec = [g for g in load().gpus if g.spec is not None]
    assert len(with_spec) == len(_raw()["gpus"]["items"])  # every hand entry reaches the table
    for g in load().gpus:
        for pid in g.pci_ids:
            assert len(pid) == 4 and int(pid, 16) >= 0
            assert pid not in seen, f"duplicate PCI id {pid}"
            seen.add(pid)
    for g in with_spec:
        assert g.spec.source.strip(), g.name
        assert g.spec.fp32_tflops > 0 and g.spec.memory_bandwidth_gbs > 0 and g.spec.memory_gb > 0


def test_tensor_and_bf16_figures_follow_the_architecture():
    no_tensor = {"kepler", "maxwell", "pascal"}
    no_bf16 = no_tensor | {"volta", "turing"}
    for g in load().gpus:
        s = g.spec
        if s is None:
            continue
        assert (s.fp16_tensor_tflops is None) == (g.arch.key in no_tensor), g.name
        assert (s.bf16_tensor_tflops is None) == (g.arch.key in no_bf16), g.name
        if s.fp16_tensor_tflops is not None:
            assert s.fp16_tensor_tflops > s.fp32_tflops, g.name


def test_cuda_table_matches_nvidia_table_3():
    cuda = load().cuda
    assert _vs(cuda["11.8"].min_driver) == "520.61.05"
    assert _vs(cuda["12.0"].min_driver) == "525.60.13"
    assert _vs(cuda["12.2"].min_driver) == "535.54.03"
    assert _vs(cuda["12.8"].min_driver) == "570.26"
    assert _vs(cuda["13.0"].min_driver) == "580.65.06"
    assert "12.7" not in cuda  # never released
    versions = load().cuda_versions()
    assert versions[0] == "8.0" and versions[-1].startswith("13.")
    assert _vs(cuda["8.0"].last_update_min_driver) == "375.26"
    assert _vs(cuda["9.0"].min_driver) == "384.81"
    assert _vs(cuda["9.2"].min_driver) == "396.26"
    floors = load().minor_compat_floor
    assert _vs(floors[11]) == "450.80.02"
    assert _vs(floors[12]) == "525.60.13"
    assert floors[13] == (580,)


# ------------------------------------------------------------------ GPU lookup

SEED_GPUS = [
    # (name as a user types it, PCI id, architecture key, compute capability)
    ("GTX 960", "1401", "maxwell", "5.2"),
    ("GTX 970", "13c2", "maxwell", "5.2"),
    ("GTX 1070", "1b81", "pascal", "6.1"),
    ("GTX 1080", "1b80", "pascal", "6.1"),
    ("GTX 1080 Ti", "1b06", "pascal", "6.1"),
    ("GTX Titan X", "17c2", "maxwell", "5.2"),
    ("Titan X (Pascal)", "1b00", "pascal", "6.1"),
    ("Tesla K20c", "1022", "kepler", "3.5"),
    ("Tesla K20m", "1028", "kepler", "3.5"),
    ("Tesla K20X", "1021", "kepler", "3.5"),
    ("Tesla K80", "102d", "kepler", "3.7"),
    ("RTX 3090", "2204", "ampere", "8.6"),
    ("RTX 4090", "2684", "ada", "8.9"),
    ("RTX 5090", "2b85", "blackwell", "12.0"),
    ("A100 PCIe 40GB", "20f1", "ampere", "8.0"),
    ("A100 SXM4 40GB", "20b0", "ampere", "8.0"),
    ("A100 PCIe 80GB", "20b5", "ampere", "8.0"),
    ("A100 SXM4 80GB", "20b2", "ampere", "8.0"),
    ("H100 PCIe", "2331", "hopper", "9.0"),
    ("H100 SXM5 80GB", "2330", "hopper", "9.0"),
    ("H100 NVL", "2321", "hopper", "9.0"),
    ("H200", "2335", "hopper", "9.0"),
    ("L40S", "26b9", "ada", "8.9"),
    ("B200", "2901", "blackwell", "10.0"),
    ("RTX 2080 Ti", "1e04", "turing", "7.5"),
    ("Tesla V100 SXM2 32GB", "1db5", "volta", "7.0"),
    ("T4", "1eb8", "turing", "7.5"),
    ("A10", "2236", "ampere", "8.6"),
    ("L4", "27b8", "ada", "8.9"),
    ("RTX A6000", "2230", "ampere", "8.6"),
]


@pytest.mark.parametrize(("name", "pci", "arch", "cc"), SEED_GPUS)
def test_gpu_resolves_by_name_and_by_pci_id(name, pci, arch, cc):
    by_name = find_gpu(name)
    assert by_name.arch.key == arch
    assert by_name.compute_capability == cc
    assert pci in by_name.pci_ids
    for form in (pci, pci.upper(), f"10de:{pci}", f"0x{pci}", f"10DE:{pci.upper()}"):
        by_id = find_gpu(form)
        assert by_id.pci_ids[0] == pci, form  # the id asked for leads
        assert (by_id.name, by_id.arch, by_id.min_branch) == (
            by_name.name,
            by_name.arch,
            by_name.min_branch,
        ), form


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("geforce gtx 1080 ti", "GeForce GTX 1080 Ti"),
        ("NVIDIA GeForce GTX 1080 Ti", "GeForce GTX 1080 Ti"),
        ("gtx1080ti", "GeForce GTX 1080 Ti"),
        ("1080 Ti", "GeForce GTX 1080 Ti"),
        ("  RTX 3090 ", "GeForce RTX 3090"),
        ("rtx 4090", "GeForce RTX 4090"),
        # names as nvidia-smi prints them
        ("NVIDIA A100-SXM4-80GB", "A100 SXM4 80GB"),
        ("NVIDIA H100 80GB HBM3", "H100 SXM5 80GB"),
        ("Tesla V100-SXM2-16GB", "Tesla V100 SXM2 16GB"),
        ("NVIDIA TITAN X (Pascal)", "TITAN X (Pascal)"),
        ("Tesla K20Xm", "Tesla K20X"),
        ("10de:1020", "Tesla K20X"),
        ("4090", "GeForce RTX 4090"),  # digits that are no PCI id fall back to names
    ],
)
def test_find_gpu_accepts_loose_names(query, expected):
    assert find_gpu(query).name == expected


def test_unknown_gpu_raises_compat_error_with_suggestions():
    with pytest.raises(CompatError) as exc:
        find_gpu("GTX 1090")
    msg = str(exc.value)
    assert "'GTX 1090'" in msg
    assert "Did you mean" in msg and "GeForce GTX 1080" in msg
    assert isinstance(exc.value, ValueError)


@pytest.mark.parametrize(
    ("query", "fragment"),
    [
        ("10de:ffff", "10de:ffff"),
        ("0xffff", "10de:ffff"),
        ("1002:73bf", "not NVIDIA"),
        ("", "empty GPU name"),
        ("nvidia", "no model name"),
    ],
)
def test_bad_gpu_ids_raise_compat_error(query, fragment):
    with pytest.raises(CompatError, match=fragment):
        find_gpu(query)


def test_ambiguous_name_lists_the_candidates():
    with pytest.raises(AmbiguousGpuError) as exc:
        find_gpu("Titan X")
    names = {g.name for g in exc.value.candidates}
    assert names == {"GeForce GTX TITAN X", "TITAN X (Pascal)"}
    assert not exc.value.equivalent  # Maxwell vs Pascal


def test_ambiguous_but_equivalent_name_is_checked_with_a_warning():
    with pytest.raises(AmbiguousGpuError) as exc:
        find_gpu("A100")
    assert exc.value.equivalent
    report = check("A100", driver="535", cuda="12.2")
    assert report.ok
    assert report.gpus[0].arch.key == "ampere"
    assert any(w.field == "gpu" and "several models" in w.message for w in report.warnings)


# ------------------------------------------------------------------ check(): the brief's cases


@pytest.mark.parametrize("gpu", ["Tesla K80", "Tesla K20c", "Tesla K20m", "K20X"])
@pytest.mark.parametrize("cuda", ["12.0", "12.4", "13.0"])
def test_kepler_with_cuda_12_or_later_is_not_ok(gpu, cuda):
    report = check(gpu, cuda=cuda)
    assert not report.ok
    assert "cuda" in report.problem_fields()
    cuda_msg = next(p.message for p in report.problems if p.field == "cuda")
    assert "Kepler" in cuda_msg and "11.x" in cuda_msg
    s = report.suggestion
    assert s is not None
    assert s.driver_branch == 470
    assert s.cuda.startswith("11.")
    assert s.kernel_modules == "proprietary"


def test_kepler_suggestion_is_cuda_11_4_with_r470_and_mentions_11_8():
    s, why = suggest([find_gpu("Tesla K80")])
    assert why is None and s is not None
    assert (s.driver_branch, s.cuda, s.cudnn) == (470, "11.4", "8.5")
    assert any("11.8" in n and "minor version compatibility" in n for n in s.notes)


def test_kepler_on_r470_runs_cuda_11_8_only_through_minor_version_compatibility():
    clean = check("Tesla K80", driver="470", cuda="11.4")
    assert clean.ok and not clean.warnings
    compat_mode = check("Tesla K80", driver="470.256.02", cuda="11.8")
    assert compat_mode.ok
    assert [w.field for w in compat_mode.warnings] == ["driver"]
    assert "minor version compatibility" in compat_mode.warnings[0].message


def test_kepler_with_a_newer_driver_branch_is_not_ok():
    report = check("Tesla K80", driver="535")
    assert not report.ok
    msg = next(p.message for p in report.problems if p.field == "driver")
    assert "R470" in msg


@pytest.mark.parametrize("cuda", ["12.0", "12.4", "12.6", "12.8", "12.9"])
def test_gtx_1080_ti_with_r580_and_cuda_12_is_ok(cuda):
    report = check("GTX 1080 Ti", driver="580", cuda=cuda)
    assert report.ok, report.problems
    assert not report.warnings


@pytest.mark.parametrize("cuda", ["13.0", "13.1", "13.3"])
def test_gtx_1080_ti_with_cuda_13_is_not_ok(cuda):
    report = check("GTX 1080 Ti", driver="580", cuda=cuda)
    assert not report.ok
    assert report.problem_fields() == {"cuda"}
    msg = report.problems[0].message
    assert "Pascal" in msg and "12.x" in msg
    assert report.suggestion is not None and report.suggestion.cuda == "12.9"


def test_pascal_on_a_branch_after_r580_is_not_ok():
    report = check("GTX 1080 Ti", driver="590")
    assert not report.ok
    msg = next(p.message for p in report.problems if p.field == "driver")
    assert "R580" in msg


@pytest.mark.parametrize("gpu", ["GTX 1080 Ti", "GTX 970", "Tesla K80", "Titan V"])
def test_pre_turing_with_open_kernel_modules_is_not_ok(gpu):
    report = check(gpu, kernel_modules="open")
    assert not report.ok
    assert report.problem_fields() == {"kernel_modules"}
    assert "Turing" in report.problems[0].message
    assert check(gpu, kernel_modules="proprietary").ok


@pytest.mark.parametrize("gpu", ["RTX 5090", "B200"])
def test_blackwell_with_proprietary_kernel_modules_is_not_ok(gpu):
    report = check(gpu, kernel_modules="proprietary")
    assert not report.ok
    assert report.problem_fields() == {"kernel_modules"}
    assert "open" in report.problems[0].message


@pytest.mark.parametrize("gpu", ["RTX 5090", "B200"])
def test_blackwell_with_driver_550_is_not_ok(gpu):
    report = check(gpu, driver="550")
    assert not report.ok
    msg = next(p.message for p in report.problems if p.field == "driver")
    assert "R570" in msg
    assert report.suggestion is not None
    assert report.suggestion.driver_branch >= 570
    assert report.suggestion.kernel_modules == "open"


def test_blackwell_with_r570_cuda_12_8_and_open_modules_is_ok():
    report = check("RTX 5090", driver="570.124.06", cuda="12.8", kernel_modules="open")
    assert report.ok, report.problems
    assert not report.warnings


def test_blackwell_needs_cuda_12_8():
    report = check("B200", cuda="12.6")
    assert not report.ok
    assert "12.8" in next(p.message for p in report.problems if p.field == "cuda")


def test_h100_with_r535_and_cuda_12_2_is_ok():
    report = check("H100 SXM5 80GB", driver="535", cuda="12.2")
    assert report.ok
    assert not report.warnings


@pytest.mark.parametrize("driver", ["535", "535.261.03"])
def test_h100_with_r535_and_cuda_12_8_is_a_minor_version_warning_not_an_error(driver):
    report = check("10de:2330", driver=driver, cuda="12.8")
    assert report.ok
    assert not report.problems
    warning = next(w for w in report.warnings if w.field == "driver")
    assert "minor version compatibility" in warning.message
    assert "570.26" in warning.message
    assert "PTX JIT" in warning.message


def test_driver_below_the_minor_version_floor_is_an_error():
    report = check("RTX 3090", driver="470", cuda="12.4")
    assert not report.ok
    msg = next(p.message for p in report.problems if p.field == "driver")
    assert "550.54.14" in msg and "525.60.13" in msg


def test_cuda_10_has_no_minor_version_compatibility():
    report = check("RTX 2080 Ti", driver="418.39", cuda="10.2")
    assert not report.ok
    assert "440.33" in next(p.message for p in report.problems if p.field == "driver")


def test_h200_needs_r550():
    assert not check("H200", driver="535").ok
    assert check("H200", driver="550", cuda="12.4").ok


def test_cuda_13_4_without_a_known_minimum_driver_checks_the_13_x_floor():
    ok = check("RTX 4090", driver="610", cuda="13.4")
    assert ok.ok and any(w.field == "cuda" for w in ok.warnings)
    too_old = check("RTX 4090", driver="575", cuda="13.4")
    assert not too_old.ok and "580" in too_old.problems[0].message


# ------------------------------------------------------------------ cuDNN per the support matrix


@pytest.mark.parametrize(
    ("gpu", "cuda", "cudnn", "ok"),
    [
        ("RTX 3090", "11.8", "9", True),  # 9.0-9.10 have CUDA 11 builds
        ("RTX 3090", "11.8", "9.10", True),
        ("RTX 3090", "11.8", "9.11", False),  # 9.11 dropped CUDA 11
        ("RTX 3090", "12.4", "9", True),
        ("RTX 3090", "12.4", "9.17", True),
        ("RTX 3090", "12.4", "8.9", True),
        ("RTX 3090", "13.0", "9", True),  # 9.12+ have CUDA 13 builds
        ("RTX 3090", "13.0", "9.12", True),
        ("RTX 3090", "13.0", "9.10", False),
        ("RTX 3090", "13.0", "8", False),
        ("GTX 1080 Ti", "12.9", "9.10", True),
        ("GTX 1080 Ti", "12.9", "9.11", False),  # 9.11 dropped Maxwell/Pascal/Volta
        ("GTX 1080 Ti", "12.9", "9.17", False),
        ("GTX 1080 Ti", "12.9", "9", True),
        ("RTX 5090", "12.8", "9.5", False),  # Blackwell needs 9.7
        ("RTX 5090", "12.8", "9.7", True),
        ("Tesla K80", "11.4", "8.5", True),
        ("Tesla K80", "11.4", "8.9", False),  # 8.9 needs compute capability 5.0
        ("Tesla K80", "11.4", "9", False),
    ],
)
def test_cudnn_against_the_support_matrix(gpu, cuda, cudnn, ok):
    report = check(gpu, cuda=cuda, cudnn=cudnn)
    assert report.ok is ok, report.problems
    if not ok:
        assert report.problem_fields() == {"cudnn"}


def test_cudnn_without_cuda_matches_any_cuda_the_gpu_runs():
    assert check("GTX 1080 Ti", cudnn="9").ok
    report = check("GTX 1080 Ti", cudnn="9.20")
    assert not report.ok and "7.5" in report.problems[0].message


def test_cudnn_major_only_names_the_releases_it_means():
    report = check("GTX 1080 Ti", cuda="12.9", cudnn="9")
    assert any("9.0-9.10" in n for n in report.notes)


def test_unknown_cudnn_minor_is_a_warning_and_unknown_major_a_problem():
    unknown_minor = check("RTX 3090", cuda="11.8", cudnn="8.7")
    assert unknown_minor.ok and unknown_minor.warnings[0].field == "cudnn"
    assert check("RTX 3090", cudnn="10").problem_fields() == {"cudnn"}


# ------------------------------------------------------------------ malformed input


@pytest.mark.parametrize(
    ("kwargs", "field", "fragment"),
    [
        ({"cuda": "12"}, "cuda", "X.Y"),
        ({"cuda": "abc"}, "cuda", "X.Y"),
        ({"cuda": "12.x"}, "cuda", "X.Y"),
        ({"cuda": "12.7"}, "cuda", "not a CUDA release"),
        ({"driver": "abc"}, "driver", "535.261.03"),
        ({"driver": "53"}, "driver", "branch"),
        ({"driver": "535.x"}, "driver", "branch"),
        ({"cudnn": "nine"}, "cudnn", "N.M"),
        ({"cudnn": "9.x"}, "cudnn", "N.M"),
        ({"kernel_modules": "closed"}, "kernel_modules", "'open'"),
        ({"distro": "windows-11"}, "distro", "debian-12"),
    ],
)
def test_malformed_input_is_a_problem_naming_the_field(kwargs, field, fragment):
    report = check("RTX 3090", **kwargs)
    assert not report.ok
    assert report.problem_fields() == {field}
    assert fragment in report.problems[0].message


def test_version_inputs_accept_common_spellings():
    assert check("RTX 3090", driver="R535", cuda="12.2.2", cudnn="9.1.0").ok


def test_unknown_gpu_in_check_is_a_gpu_problem():
    report = check("Voodoo 5", cuda="12.4")
    assert report.problem_fields() == {"gpu"}
    assert "Voodoo 5" in report.problems[0].message
    assert report.suggestion is None


# ------------------------------------------------------------------ multi-GPU boxes


def test_every_gpu_of_a_box_must_be_supported():
    report = check(["RTX 3090", "GTX 1080 Ti"], driver="580", cuda="13.0")
    assert not report.ok
    assert report.problem_fields() == {"cuda"}
    assert "GTX 1080 Ti" in report.problems[0].message
    assert check(["RTX 3090", "GTX 1080 Ti"], driver="580", cuda="12.8").ok


def test_suggestion_for_a_mixed_box_is_bounded_by_the_oldest_gpu():
    s, _ = suggest([find_gpu("RTX 3090"), find_gpu("GTX 1080 Ti")])
    assert s is not None
    assert (s.driver_branch, s.cuda, s.kernel_modules) == (580, "12.9", "proprietary")


def test_pascal_and_blackwell_cannot_share_a_box():
    report = check(["GTX 1080", "RTX 5090"])
    assert not report.ok
    assert "kernel_modules" in report.problem_fields()
    assert report.suggestion is None
    assert "kernel module" in (report.suggestion_missing_reason or "")


def test_kepler_and_blackwell_have_no_common_driver_branch():
    s, why = suggest([find_gpu("Tesla K80"), find_gpu("B200")])
    assert s is None and why is not None and "R470" in why


def test_the_same_gpu_twice_is_reported_once():
    report = check(["GTX 1080 Ti", "1b06"], cuda="13.0")
    assert len(report.gpus) == 2
    assert len(report.problems) == 1
    assert "2 x GeForce GTX 1080 Ti" in format_report(report)


# ------------------------------------------------------------------ suggestions


@pytest.mark.parametrize(
    ("gpu", "expected"),
    [
        ("GTX 1080 Ti", (580, "12.9", "9.10", "proprietary")),
        ("GTX 970", (580, "12.9", "9.10", "proprietary")),
        ("Tesla K80", (470, "11.4", "8.5", "proprietary")),
    ],
)
def test_suggestions_for_legacy_gpus(gpu, expected):
    s, _ = suggest([find_gpu(gpu)])
    assert s is not None
    assert (s.driver_branch, s.cuda, s.cudnn, s.kernel_modules) == expected


@pytest.mark.parametrize("gpu", [f"10de:{g.pci_ids[0]}" for g in load().gpus])
def test_every_suggestion_passes_its_own_check(gpu):
    g = find_gpu(gpu)
    s, why = suggest([g])
    if g.compute_capability is None or g.arch.key == "tesla":
        # no CUDA release in the data (8.0 on) runs on them: no suggestion, and why
        assert s is None and why, g.name
        return
    assert s is not None, why
    report = check(
        gpu,
        driver=str(s.driver_branch),
        cuda=s.cuda,
        cudnn=s.cudnn,
        kernel_modules=s.kernel_modules,
    )
    assert report.ok, report.problems
    assert not [w for w in report.warnings if w.field != "kernel_modules"], report.warnings


def test_modern_gpus_get_open_modules_and_a_cuda_13_suggestion():
    for name in ("RTX 5090", "H100 PCIe", "RTX 2080 Ti", "A100 SXM4 80GB"):
        s, _ = suggest([find_gpu(name)])
        assert s is not None
        assert s.kernel_modules == "open"
        assert s.cuda.startswith("13.")


# ------------------------------------------------------------------ kernel modules


@pytest.mark.parametrize(
    ("arch", "branch", "expected"),
    [
        ("kepler", 470, "proprietary"),
        ("pascal", 580, "proprietary"),
        ("volta", "535", "proprietary"),
        ("turing", 535, "proprietary"),
        ("turing", 550, "proprietary"),
        ("turing", 560, "open"),
        ("ampere", 580, "open"),
        ("Hopper", 610, "open"),
        ("blackwell", 570, "open"),
        ("ada", 620, "open"),
    ],
)
def test_recommended_kernel_modules(arch, branch, expected):
    assert recommended_kernel_modules(arch, branch) == expected


def test_recommended_kernel_modules_takes_an_architecture_object_and_rejects_unknowns():
    assert recommended_kernel_modules(find_gpu("RTX 5090").arch, 575) == "open"
    assert recommended_kernel_modules("fermi", 390) == "proprietary"
    with pytest.raises(CompatError, match="rubin"):
        recommended_kernel_modules("rubin", 620)


def test_proprietary_modules_are_gone_after_r610():
    report = check("RTX 3090", driver="615", kernel_modules="proprietary")
    assert not report.ok and "R610" in report.problems[0].message
    assert check("RTX 3090", driver="610", kernel_modules="proprietary").ok


def test_open_modules_before_r515_do_not_exist():
    report = check("RTX 2080 Ti", driver="470", kernel_modules="open")
    assert not report.ok and "R515" in report.problems[0].message


def test_auto_kernel_modules_resolves_per_branch():
    old = check("RTX 3090", driver="535", kernel_modules="auto")
    new = check("RTX 3090", driver="580", kernel_modules="auto")
    assert old.ok and new.ok
    assert "resolves to proprietary" in " ".join(old.notes)
    assert "resolves to open" in " ".join(new.notes)


# ------------------------------------------------------------------ distributions


def test_debian_12_packages_give_driver_535_and_cuda_11_8():
    report = check("GTX 970", distro="debian-12")
    assert report.ok
    assert report.inputs["cuda"] == "11.8"
    assert (report.inputs["driver"] or "").startswith("535.")


def test_debian_12_default_driver_does_not_drive_a_k80_but_its_tesla_470_package_does():
    report = check("Tesla K80", distro="bookworm")
    assert not report.ok
    assert "driver" in report.problem_fields()
    assert any("nvidia-tesla-470-driver" in n for n in report.notes)


@pytest.mark.parametrize(
    ("name", "key", "cuda"),
    [
        ("trixie", "debian-13", "12.4"),
        ("jammy", "ubuntu-22.04", "11.5"),
        ("ubuntu-24.04", "ubuntu-24.04", "12.0"),
    ],
)
def test_distributions_resolve_with_their_cuda_toolkit(name, key, cuda):
    d = find_distribution(name)
    assert d.key == key and d.cuda == cuda


def test_ubuntu_picks_the_newest_branch_that_supports_the_gpu():
    report = check("Tesla K80", distro="ubuntu-22.04")
    assert report.inputs["driver"] == "470"


# ------------------------------------------------------------------ specs for the bench


def test_gpu_spec_figures():
    ti = gpu_spec("GTX 1080 Ti")
    assert ti.fp32_tflops == pytest.approx(11.3, abs=0.1)
    assert ti.memory_bandwidth_gbs == 484
    assert ti.bf16_tensor_tflops is None and ti.fp16_tensor_tflops is None
    h100 = gpu_spec(find_gpu("10de:2330"))
    assert h100.bf16_tensor_tflops == pytest.approx(989, abs=1)
    assert (h100.pcie_gen, h100.pcie_width) == (5, 16)
    assert gpu_spec("RTX 3090").fp16_tensor_tflops == pytest.approx(71)
    assert gpu_spec("Tesla K80").memory_gb == 12  # per GPU of the two on the board


# ------------------------------------------------------------------ report output


def test_report_to_dict_is_json_and_says_why():
    report = check("Tesla K80", driver="535", cuda="12.4", cudnn="9", kernel_modules="open")
    data = json.loads(json.dumps(report.to_dict()))
    assert data["ok"] is False
    fields = {p["field"] for p in data["problems"]}
    assert {"driver", "cuda", "cudnn", "kernel_modules"} <= fields
    assert all(p["message"] for p in data["problems"])
    assert data["suggestion"]["driver_branch"] == 470
    assert data["gpus"][0]["compute_capability"] == "3.7"


def test_format_report_is_readable():
    text = format_report(check("GTX 1080 Ti", driver="580", cuda="13.0"))
    assert "GeForce GTX 1080 Ti [10de:1b06]" in text
    assert "NOT OK" in text
    assert "[cuda]" in text
    assert "Newest combination that works: driver R580, CUDA 12.9" in text
    ok_text = format_report(check("GTX 1080 Ti", driver="580", cuda="12.9"))
    assert "Result:   OK" in ok_text


# ------------------------------------------------------------------ CLI


def test_cli_exit_codes(capsys):
    assert cli(["--gpu", "GTX 1080 Ti", "--driver", "580", "--cuda", "12.9"]) == 0
    assert cli(["--gpu", "GTX 1080 Ti", "--driver", "580", "--cuda", "13.0"]) == 2
    assert cli(["--gpu", "Tesla K80", "--gpu", "Tesla K80", "--cuda", "11.4"]) == 0
    assert cli(["--gpu", "no such gpu"]) == 2
    assert cli(["--cuda", "12.4"]) == 2  # no GPU
    assert "--gpu" in capsys.readouterr().err


def test_cli_json_output_parses(capsys):
    rc = cli(["--gpu", "Tesla K80", "--cuda", "12.x", "--json"])
    out = capsys.readouterr().out
    data = json.loads(out)
    assert rc == 2
    assert data["ok"] is False
    assert [p["field"] for p in data["problems"]] == ["cuda"]


def test_cli_kernel_modules_and_cudnn(capsys):
    assert cli(["--gpu", "RTX 5090", "--kernel-modules", "proprietary"]) == 2
    assert "open kernel modules" in capsys.readouterr().out
    assert (
        cli(
            [
                "--gpu",
                "RTX 5090",
                "--kernel-modules",
                "open",
                "--driver",
                "580",
                "--cuda",
                "13.0",
                "--cudnn",
                "9.12",
            ]
        )
        == 0
    )


def test_cli_help_list_and_usage_errors(capsys):
    assert cli(["--help"]) == 0
    assert "examples:" in capsys.readouterr().out
    assert cli(["--list-gpus"]) == 0
    listing = capsys.readouterr().out
    assert "GeForce GTX 1080 Ti" in listing and "1b06" in listing
    assert cli(["--gpu", "GTX 970", "--bogus"]) == 2


def test_compat_mounts_as_a_subcommand(capsys):
    parser = argparse.ArgumentParser(prog="dlsetup")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("compat")
    compat_cli.add_arguments(p)
    p.set_defaults(func=compat_cli.run)
    args = parser.parse_args(["compat", "--gpu", "H100 PCIe", "--driver", "535", "--cuda", "12.2"])
    assert args.func(args) == 0
    assert "H100 PCIe" in capsys.readouterr().out
    assert "examples:" in p.format_help()
