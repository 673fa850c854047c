"""cuda in a Debian 12 systemd container, from Debian's REAL nvidia-cuda-toolkit.

What a user gets in a login shell: nvcc 11.8 that compiles CUDA code with the
host compiler it supports, /usr/local/cuda laid out as scripts expect, and an
honest report of what could not be done here (no GPU, no cuDNN from Debian).
"""

import json

CHECK = r"""
#include <cstdio>
#include <cuda_runtime.h>
__global__ void scale(float *x, float f) { x[threadIdx.x] *= f; }
int main() {
  int n = 0;
  cudaError_t e = cudaGetDeviceCount(&n);
  std::printf("devices=%d err=%s\n", n, cudaGetErrorName(e));
  return 0;
}
"""


def facts(host):
    return json.loads(host.file("/tmp/cuda-facts.json").content_string)


def test_packages_installed(host):
    assert host.package("nvidia-cuda-toolkit").is_installed
    assert host.package("nvidia-cuda-toolkit").version.startswith("11.8")
    # the host compiler CUDA 11.8 supports (bookworm's default g++ is 12)
    assert host.package("nvidia-cuda-toolkit-gcc").is_installed
    assert host.package("g++-11").is_installed


def test_login_shell_nvcc_is_11_8(host):
    out = host.check_output("bash -lc 'command -v nvcc; nvcc --version'")
    assert out.splitlines()[0] == "/usr/local/cuda/bin/nvcc"
    assert "release 11.8" in out


def test_profile_script(host):
    f = host.file("/etc/profile.d/cuda.sh")
    assert f.exists and f.mode == 0o644
    env = host.check_output(
        "bash -lc 'echo $CUDA_HOME; echo $NVCC_PREPEND_FLAGS; echo $CUDAHOSTCXX'"
    )
    assert env.splitlines() == ["/usr/local/cuda", "-ccbin /usr/bin/cuda-g++", "/usr/bin/cuda-g++"]


def test_usr_local_cuda_has_the_usual_layout(host):
    assert host.file("/usr/local/cuda").is_symlink
    for path in (
        "bin/nvcc",
        "bin/ptxas",
        "include/cuda_runtime.h",
        "lib64/libcudart.so",
        "nvvm/libdevice",
    ):
        assert host.file(f"/usr/local/cuda/{path}").exists, path


def test_a_cuda_program_compiles_in_a_login_shell(host):
    host.check_output("mkdir -p /tmp/cudatest")
    host.check_output(f"cat > /tmp/cudatest/t.cu <<'EOF'\n{CHECK}\nEOF")
    cmd = host.run("bash -lc 'nvcc -o /tmp/cudatest/t /tmp/cudatest/t.cu'")
    assert cmd.rc == 0, cmd.stderr
    # Built against the CUDA runtime; without a GPU it runs and says so.
    run = host.run("/tmp/cudatest/t")
    assert run.rc == 0
    assert "devices=0" in run.stdout


def test_the_same_compile_through_usr_local_cuda_like_a_makefile(host):
    cmd = host.run(
        "bash -lc '/usr/local/cuda/bin/nvcc -I/usr/local/cuda/include -L/usr/local/cuda/lib64 "
        "-lcudart -o /tmp/cudatest/t2 /tmp/cudatest/t.cu'"
    )
    assert cmd.rc == 0, cmd.stderr


def test_role_check_program_compiled(host):
    assert host.file("/var/lib/dlsetup/cuda-check/check-11.8").is_file


def test_reported_skips(host):
    skipped = {s["step"]: s["reason"] for s in facts(host)["skipped"]}
    assert "no NVIDIA GPU" in skipped["run the compiled CUDA check program"]
    cudnn = skipped["cuDNN 9"]
    assert "downloader" in cudnn and "internet" in cudnn and "cuda_source: nvidia" in cudnn


def test_report(host):
    report = facts(host)["report"]
    assert report["source"] == "distro"
    assert report["versions"] == ["11.8"]
    assert report["nvcc_version"] == "11.8"
