"""Parsers of dlsetup.gpucheck against the text real tools and kernel files produce.

No GPU is needed: the samples below are the formats of /proc/modules,
/proc/driver/nvidia/version (proprietary and open kernel modules), lspci -nn,
nvidia-smi (table, CSV, errors), nvcc, ldconfig -p and cuDNN headers.
"""

from __future__ import annotations

import pytest

from dlsetup.gpucheck import parse
from dlsetup.gpucheck.checks import normalize_bus_id


def test_proc_modules() -> None:
    text = (
        "nvidia_uvm 1527808 0 - Live 0x0000000000000000 (POE)\n"
        "nvidia_modeset 1306624 1 nvidia_drm, Live 0x0000000000000000 (POE)\n"
        "nvidia 56717312 3 nvidia_uvm,nvidia_modeset, Live 0x0000000000000000 (POE)\n"
        "garbage line\n"
    )
    modules = parse.parse_proc_modules(text)
    assert set(modules) == {"nvidia_uvm", "nvidia_modeset", "nvidia"}
    assert modules["nvidia"]["used_by"] == ["nvidia_uvm", "nvidia_modeset"]
    assert modules["nvidia"]["refcount"] == 3
    assert modules["nvidia_uvm"]["used_by"] == []


@pytest.mark.parametrize(
    ("text", "version"),
    [
        (
            "NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.261.03  Wed Jul 30 21:28:11 UTC 2025\n"
            "GCC version:  gcc version 12.2.0 (Debian 12.2.0-14) \n",
            "535.261.03",
        ),
        (
            "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  580.126.09  Release Build  "
            "(dvs-builder@U22-I3-AM02-24-3)  Wed Jan  7 22:51:36 UTC 2026\n",
            "580.126.09",
        ),
        ("535.261.03\n", "535.261.03"),
        ("550.54\n", "550.54"),
        ("", None),
        ("something else\n", None),
    ],
)
def test_nvidia_kernel_version(text: str, version: str | None) -> None:
    assert parse.parse_nvidia_kernel_version(text) == version


def test_lspci_nn() -> None:
    text = (
        "00:02.0 VGA compatible controller [0300]: Intel Corporation CoffeeLake-S GT2 [UHD Graphics 630] [8086:3e92]\n"
        "01:00.0 VGA compatible controller [0300]: NVIDIA Corporation GP102 [GeForce GTX 1080 Ti] [10de:1b06] (rev a1)\n"
        "01:00.1 Audio device [0403]: NVIDIA Corporation GP102 HDMI Audio Controller [10de:10ef] (rev a1)\n"
        "0000:41:00.0 3D controller [0302]: NVIDIA Corporation GA100 [A100 PCIe 40GB] [10de:20f1] (rev a1)\n"
    )
    devices = parse.parse_lspci_nn(text)
    assert [d["slot"] for d in devices] == ["00:02.0", "01:00.0", "01:00.1", "0000:41:00.0"]
    gpu = devices[1]
    assert (gpu["vendor"], gpu["device"], gpu["class"]) == (0x10DE, 0x1B06, 0x0300)
    assert gpu["description"] == "NVIDIA Corporation GP102 [GeForce GTX 1080 Ti]"
    assert devices[3]["class"] == 0x0302


def test_smi_csv_with_missing_values() -> None:
    fields = ["index", "name", "ecc.mode.current", "memory.total", "persistence_mode"]
    text = "0, NVIDIA GeForce GTX 1080 Ti, [N/A], 11264, Enabled\n1, Tesla K80, [Not Supported], 11441, Disabled\n\n"
    rows = parse.parse_smi_csv(text, fields)
    assert rows[0] == {
        "index": "0",
        "name": "NVIDIA GeForce GTX 1080 Ti",
        "ecc.mode.current": None,
        "memory.total": "11264",
        "persistence_mode": "Enabled",
    }
    assert rows[1]["ecc.mode.current"] is None
    assert parse.parse_smi_csv("0, too, few\n", fields) == []


def test_smi_invalid_field_messages() -> None:
    assert (
        parse.smi_invalid_field('Field "compute_cap" is not a valid field to query.\n\n')
        == "compute_cap"
    )
    # nvidia-smi on Windows prints typographic quotes
    assert (
        parse.smi_invalid_field(
            "Field \u201cencoder.stats.sessionCount\u201d is not a valid field to query."
        )
        == "encoder.stats.sessionCount"
    )
    assert (
        parse.smi_invalid_field("Failed to initialize NVML: Driver/library version mismatch")
        is None
    )


# Table headers as each driver generation prints them (shapes of real outputs; see
# tests/fixtures/gpucheck/make_bundles.py for the whole tables).
HEADER_384 = "| NVIDIA-SMI 384.59                 Driver Version: 384.59                    |"
HEADER_440 = "| NVIDIA-SMI 440.31       Driver Version: 440.31       CUDA Version: 10.2     |"
HEADER_535 = (
    "| NVIDIA-SMI 535.261.03             Driver Version: 535.261.03   CUDA Version: 12.2     |"
)
HEADER_595 = (
    "| NVIDIA-SMI 595.80                 Driver Version: 595.80         CUDA Version: 13.2     |"
)
HEADER_610 = (
    "| NVIDIA-SMI 610.57.04              KMD Version: 610.57.04     CUDA UMD Version: 13.3     |"
)


@pytest.mark.parametrize(
    ("header", "driver", "driver_field", "cuda", "cuda_field"),
    [
        (HEADER_384, "384.59", "Driver Version", None, None),
        (HEADER_440, "440.31", "Driver Version", "10.2", "CUDA Version"),
        (HEADER_535, "535.261.03", "Driver Version", "12.2", "CUDA Version"),
        (HEADER_595, "595.80", "Driver Version", "13.2", "CUDA Version"),
        (HEADER_610, "610.57.04", "KMD Version", "13.3", "CUDA UMD Version"),
    ],
)
def test_smi_header_generations(
    header: str, driver: str, driver_field: str, cuda: str | None, cuda_field: str | None
) -> None:
    """Before 410 no CUDA field; 410-595 'CUDA Version'; 610 on 'KMD' / 'CUDA UMD Version'."""
    table = "Wed Aug 12 21:53:45 2026\n+------+\n" + header + "\n|------+\n"
    fields = parse.parse_smi_header(table)
    assert fields.get("driver_version") == driver
    assert fields.get("driver_field") == driver_field
    assert fields.get("cuda_version") == cuda
    assert fields.get("cuda_field") == cuda_field


def test_smi_header_of_an_error() -> None:
    assert parse.parse_smi_header("Failed to initialize NVML: Unknown Error") == {}
    assert parse.parse_smi_header("") == {}


Q_384 = """
==============NVSMI LOG==============

Timestamp                           : Thu Sep  7 10:55:26 2017
Driver Version                      : 384.59

Attached GPUs                       : 4
GPU 00000000:04:00.0
    Product Name                    : GeForce GTX 1080 Ti
"""
Q_440 = Q_384.replace("384.59", "440.31").replace(
    "Driver Version                      : 440.31\n",
    "Driver Version                      : 440.31\nCUDA Version                        : 10.2\n",
)
Q_610 = """
==============NVSMI LOG==============

Timestamp                                              : Wed Aug 12 21:53:45 2026
Driver Version                                         : 610.57.04 [Deprecated; will be removed in CUDA 14.0. Use KMD Version instead]
CUDA Version                                           : 13.3 [Deprecated; will be removed in CUDA 14.0. Use CUDA UMD Version instead]
KMD Version                                            : 610.57.04
CUDA UMD Version                                       : 13.3

Attached GPUs                                          : 1
GPU 00000000:0C:00.0
    Product Name                                       : NVIDIA GeForce RTX 2080 SUPER
    CUDA Version                                       : 99.9
"""


def test_smi_q_generations() -> None:
    """-q: the old names until 610, then the new ones preferred (the old carry a notice)."""
    assert parse.parse_smi_q(Q_384) == {
        "driver_version": "384.59",
        "driver_field": "Driver Version",
    }
    assert parse.parse_smi_q(Q_440) == {
        "driver_version": "440.31",
        "driver_field": "Driver Version",
        "cuda_version": "10.2",
        "cuda_field": "CUDA Version",
    }
    assert parse.parse_smi_q(Q_610) == {
        "driver_version": "610.57.04",
        "driver_field": "KMD Version",
        "cuda_version": "13.3",
        "cuda_field": "CUDA UMD Version",
    }
    # with the new names gone, the deprecated ones still parse, notice and all
    old_only = "\n".join(
        line for line in Q_610.splitlines() if not line.startswith(("KMD", "CUDA UMD"))
    )
    assert parse.parse_smi_q(old_only)["driver_version"] == "610.57.04"
    assert parse.parse_smi_q(old_only)["cuda_version"] == "13.3"
    assert parse.parse_smi_q("NVIDIA-SMI has failed because it couldn't communicate") == {}


def test_lspci_k_driver_in_use_not_the_modules_line() -> None:
    """'Kernel modules' lists nouveau on every box with it installed; only 'in use' binds."""
    text = (
        "04:00.0 VGA compatible controller [0300]: NVIDIA Corporation GP102 [GeForce GTX 1080 Ti]"
        " [10de:1b06] (rev a1)\n"
        "\tSubsystem: Micro-Star International Co., Ltd. [MSI] Device [1462:360a]\n"
        "\tKernel driver in use: nvidia\n"
        "\tKernel modules: nvidiafb, nouveau, nvidia_drm, nvidia\n"
        "05:00.0 VGA compatible controller [0300]: NVIDIA Corporation TU102 [10de:1e07] (rev a1)\n"
        "\tKernel driver in use: nouveau\n"
        "\tKernel modules: nvidiafb, nouveau\n"
        "0000:41:00.0 3D controller [0302]: NVIDIA Corporation GA100 [10de:20f1] (rev a1)\n"
        "\tKernel modules: nvidia\n"
    )
    assert parse.parse_lspci_k(text) == {
        "04:00.0": "nvidia",
        "05:00.0": "nouveau",
        "0000:41:00.0": None,
    }
    assert [d["slot"] for d in parse.parse_lspci_nn(text)] == ["04:00.0", "05:00.0", "0000:41:00.0"]


def test_toolkit_versions() -> None:
    nvcc = (
        "nvcc: NVIDIA (R) Cuda compiler driver\nCopyright (c) 2005-2022 NVIDIA Corporation\n"
        "Built on Wed_Sep_21_10:33:58_PDT_2022\nCuda compilation tools, release 11.8, V11.8.89\n"
        "Build cuda_11.8.r11.8/compiler.31833905_0\n"
    )
    assert parse.parse_nvcc_version(nvcc) == "11.8"
    assert (
        parse.parse_cuda_version_json('{"cuda": {"name": "CUDA SDK", "version": "12.2.20230823"}}')
        == "12.2"
    )
    assert parse.parse_cuda_version_json("not json") is None
    assert parse.parse_cuda_version_json('{"cuda_nvcc": {"version": "11.8.89"}}') is None
    assert parse.parse_cuda_version_txt("CUDA Version 10.2.89\n") == "10.2"


def test_ldconfig_p_and_library_versions() -> None:
    text = (
        "1187 libs found in cache `/etc/ld.so.cache'\n"
        "\tlibcudnn.so.8 (libc6,x86-64) => /lib/x86_64-linux-gnu/libcudnn.so.8\n"
        "\tlibcuda.so.1 (libc6,x86-64) => /lib/x86_64-linux-gnu/libcuda.so.1\n"
        "\tlibc.so.6 (libc6,x86-64, OS ABI: Linux 3.2.0) => /lib/x86_64-linux-gnu/libc.so.6\n"
    )
    assert parse.parse_ldconfig_p(text) == [
        ("libcudnn.so.8", "/lib/x86_64-linux-gnu/libcudnn.so.8"),
        ("libcuda.so.1", "/lib/x86_64-linux-gnu/libcuda.so.1"),
        ("libc.so.6", "/lib/x86_64-linux-gnu/libc.so.6"),
    ]
    assert parse.lib_version("libnvidia-ml.so.535.261.03", "libnvidia-ml.so") == "535.261.03"
    assert parse.lib_version("libnvidia-ml.so.1", "libnvidia-ml.so") == "1"
    assert parse.lib_version("libnvidia-ml.so", "libnvidia-ml.so") is None
    assert parse.lib_version("libcudnn_ops_infer.so.8", "libcudnn.so") is None


def test_cudnn_versions() -> None:
    header = "#define CUDNN_MAJOR 8\n#define CUDNN_MINOR 9\n#define CUDNN_PATCHLEVEL 7\n"
    assert parse.parse_cudnn_header(header) == "8.9.7"
    assert parse.cudnn_version_from_int(8907) == "8.9.7"
    assert parse.cudnn_version_from_int(8700) == "8.7.0"
    assert parse.cudnn_version_from_int(90100) == "9.1.0"
    assert parse.cuda_version_from_int(12020) == "12.2"
    assert parse.cuda_version_from_int(11040) == "11.4"


def test_small_helpers() -> None:
    assert parse.version_tuple("535.261.03") == (535, 261, 3)
    assert parse.version_tuple("v12.2") == (12, 2)
    assert parse.version_tuple("[N/A]") is None
    assert parse.parse_link_speed("8.0 GT/s PCIe") == 8.0
    assert parse.parse_link_speed("Unknown") is None
    assert parse.parse_hex("0x10de\n") == 0x10DE
    assert parse.parse_uevent("DRIVER=nvidia\nPCI_SLOT_NAME=0000:01:00.0\n")["DRIVER"] == "nvidia"
    assert parse.to_int("34") == 34 and parse.to_int("9.41") == 9 and parse.to_int(None) is None
    assert normalize_bus_id("00000000:01:00.0") == "0000:01:00.0"
    assert normalize_bus_id("01:00.0") == "0000:01:00.0"
    assert normalize_bus_id("0000:41:00.0") == "0000:41:00.0"
