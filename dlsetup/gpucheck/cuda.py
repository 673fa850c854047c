"""Live GPU self-tests through ctypes: the CUDA driver API, NVRTC and cuDNN.

Nothing here runs on a replay: these functions talk to the hardware, which is
why the checks call them through ``Probe.call``: a capture records their
results (``to_json``) and a replay answers those (``from_json``). They never
raise for a CUDA failure; they return what happened so the check can explain it.

Sequence per GPU: cuInit -> cuDeviceGetCount -> cuCtxCreate -> cuMemAlloc ->
a host-to-device and device-to-host copy whose bytes are compared -> a small
kernel compiled with NVRTC, launched, and its output checked on the host.
Then, with every context still alive, a short load (pinned copies and kernel
launches) runs in background threads while ``during_load`` is called, so the
PCIe link state is read while the GPU is busy (an idle GPU drops its link to
gen1 to save power).

Standard library only: this file runs on the target host with its python3.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .parse import cudnn_version_from_int

CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 75
CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR = 76
CUDA_ERROR_UNSUPPORTED_PTX_VERSION = 222

KERNEL_NAME = b"dlsetup_axpb"
KERNEL_SOURCE = b"""
extern "C" __global__ void dlsetup_axpb(const float *x, float *y, float a, float b, int n)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = a * x[i] + b;
}
"""
KERNEL_N = 1 << 16
COPY_BYTES = 8 * 1024 * 1024
LOAD_BYTES = 64 * 1024 * 1024

c_int_p = ctypes.POINTER(ctypes.c_int)
c_size_p = ctypes.POINTER(ctypes.c_size_t)
c_void_pp = ctypes.POINTER(ctypes.c_void_p)
c_u64_p = ctypes.POINTER(ctypes.c_uint64)
c_char_pp = ctypes.POINTER(ctypes.c_char_p)


class CudaFailure(Exception):
    def __init__(self, step: str, code: int, name: str) -> None:
        super().__init__(f"{step} failed: {name} ({code})")
        self.step = step
        self.code = code
        self.name = name


def _bind(lib: Any, name: str, argtypes: list[Any], restype: Any = ctypes.c_int) -> Any:
    fn = getattr(lib, name)
    fn.argtypes = argtypes
    fn.restype = restype
    return fn


class CudaDriver:
    """The few driver API entry points the self-test needs."""

    def __init__(self, libname: str = "libcuda.so.1") -> None:
        lib = ctypes.CDLL(libname)
        self.lib = lib
        self.cuInit = _bind(lib, "cuInit", [ctypes.c_uint])
        self.cuDriverGetVersion = _bind(lib, "cuDriverGetVersion", [c_int_p])
        self.cuDeviceGetCount = _bind(lib, "cuDeviceGetCount", [c_int_p])
        self.cuDeviceGet = _bind(lib, "cuDeviceGet", [c_int_p, ctypes.c_int])
        self.cuDeviceGetName = _bind(
            lib, "cuDeviceGetName", [ctypes.c_char_p, ctypes.c_int, ctypes.c_int]
        )
        self.cuDeviceGetAttribute = _bind(
            lib, "cuDeviceGetAttribute", [c_int_p, ctypes.c_int, ctypes.c_int]
        )
        self.cuDeviceTotalMem = _bind(lib, "cuDeviceTotalMem_v2", [c_size_p, ctypes.c_int])
        self.cuCtxCreate = _bind(lib, "cuCtxCreate_v2", [c_void_pp, ctypes.c_uint, ctypes.c_int])
        self.cuCtxDestroy = _bind(lib, "cuCtxDestroy_v2", [ctypes.c_void_p])
        self.cuCtxSetCurrent = _bind(lib, "cuCtxSetCurrent", [ctypes.c_void_p])
        self.cuCtxSynchronize = _bind(lib, "cuCtxSynchronize", [])
        self.cuMemAlloc = _bind(lib, "cuMemAlloc_v2", [c_u64_p, ctypes.c_size_t])
        self.cuMemFree = _bind(lib, "cuMemFree_v2", [ctypes.c_uint64])
        self.cuMemAllocHost = _bind(lib, "cuMemAllocHost_v2", [c_void_pp, ctypes.c_size_t])
        self.cuMemFreeHost = _bind(lib, "cuMemFreeHost", [ctypes.c_void_p])
        self.cuMemcpyHtoD = _bind(
            lib, "cuMemcpyHtoD_v2", [ctypes.c_uint64, ctypes.c_void_p, ctypes.c_size_t]
        )
        self.cuMemcpyDtoH = _bind(
            lib, "cuMemcpyDtoH_v2", [ctypes.c_void_p, ctypes.c_uint64, ctypes.c_size_t]
        )
        self.cuModuleLoadData = _bind(lib, "cuModuleLoadData", [c_void_pp, ctypes.c_char_p])
        self.cuModuleUnload = _bind(lib, "cuModuleUnload", [ctypes.c_void_p])
        self.cuModuleGetFunction = _bind(
            lib, "cuModuleGetFunction", [c_void_pp, ctypes.c_void_p, ctypes.c_char_p]
        )
        self.cuLaunchKernel = _bind(
            lib,
            "cuLaunchKernel",
            [ctypes.c_void_p] + [ctypes.c_uint] * 7 + [ctypes.c_void_p, c_void_pp, c_void_pp],
        )
        self.cuGetErrorName = _bind(lib, "cuGetErrorName", [ctypes.c_int, c_char_pp])

    def error_name(self, code: int) -> str:
        name = ctypes.c_char_p()
        if self.cuGetErrorName(code, ctypes.byref(name)) == 0 and name.value:
            return name.value.decode("ascii", "replace")
        return f"CUDA error {code}"

    def check(self, step: str, code: int) -> None:
        if code != 0:
            raise CudaFailure(step, code, self.error_name(code))


class Nvrtc:
    def __init__(self, path: str) -> None:
        lib = ctypes.CDLL(path)
        self.path = path
        self.create = _bind(
            lib,
            "nvrtcCreateProgram",
            [c_void_pp, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int, c_char_pp, c_char_pp],
        )
        self.compile = _bind(lib, "nvrtcCompileProgram", [ctypes.c_void_p, ctypes.c_int, c_char_pp])
        self.log_size = _bind(lib, "nvrtcGetProgramLogSize", [ctypes.c_void_p, c_size_p])
        self.log = _bind(lib, "nvrtcGetProgramLog", [ctypes.c_void_p, ctypes.c_char_p])
        self.ptx_size = _bind(lib, "nvrtcGetPTXSize", [ctypes.c_void_p, c_size_p])
        self.ptx = _bind(lib, "nvrtcGetPTX", [ctypes.c_void_p, ctypes.c_char_p])
        self.destroy = _bind(lib, "nvrtcDestroyProgram", [c_void_pp])
        self.error_string = _bind(lib, "nvrtcGetErrorString", [ctypes.c_int], ctypes.c_char_p)
        self.version_fn = _bind(lib, "nvrtcVersion", [c_int_p, c_int_p])

    def version(self) -> str:
        major, minor = ctypes.c_int(), ctypes.c_int()
        if self.version_fn(ctypes.byref(major), ctypes.byref(minor)) != 0:
            return "?"
        return f"{major.value}.{minor.value}"

    def compile_ptx(self, source: bytes, arch: str) -> bytes:
        """Compile to PTX for ``compute_XY``; raises RuntimeError with NVRTC's log."""
        prog = ctypes.c_void_p()
        rc = self.create(ctypes.byref(prog), source, b"dlsetup_smoke.cu", 0, None, None)
        if rc != 0:
            raise RuntimeError(f"nvrtcCreateProgram: {self._err(rc)}")
        try:
            opts = (ctypes.c_char_p * 1)((f"--gpu-architecture={arch}").encode("ascii"))
            rc = self.compile(prog, 1, opts)
            if rc != 0:
                size = ctypes.c_size_t()
                self.log_size(prog, ctypes.byref(size))
                buf = ctypes.create_string_buffer(max(size.value, 1))
                self.log(prog, buf)
                log = buf.value.decode("utf-8", "replace").strip()
                raise RuntimeError(f"nvrtcCompileProgram({arch}): {self._err(rc)} {log}")
            size = ctypes.c_size_t()
            self.ptx_size(prog, ctypes.byref(size))
            buf = ctypes.create_string_buffer(size.value)
            self.ptx(prog, buf)
            return buf.raw
        finally:
            self.destroy(ctypes.byref(prog))

    def _err(self, rc: int) -> str:
        text = self.error_string(rc)
        return text.decode("ascii", "replace") if text else f"NVRTC error {rc}"


@dataclass
class DeviceResult:
    index: int
    name: str = ""
    compute_capability: str = ""
    total_memory_mib: int = 0
    copy_ok: bool = False
    kernel_ok: bool | None = None  # None: not tried (no NVRTC)
    notes: list[str] = field(default_factory=list)


@dataclass
class CudaReport:
    driver_cuda_version: int | None = None
    device_count: int = 0
    devices: list[DeviceResult] = field(default_factory=list)
    error: str | None = None  # the first fatal failure, with the step
    error_name: str | None = None
    nvrtc: str | None = None
    nvrtc_version: str | None = None
    load_seconds: float = 0.0
    during_load: Any = None

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CudaReport:
        fields = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in fields and k != "devices"}
        known = {f.name for f in dataclasses.fields(DeviceResult)}
        devices = [
            DeviceResult(**{k: v for k, v in d.items() if k in known})
            for d in data.get("devices") or []
        ]
        return cls(devices=devices, **values)

    @property
    def ok(self) -> bool:
        return (
            self.error is None
            and bool(self.devices)
            and all(d.copy_ok and d.kernel_ok is not False for d in self.devices)
        )


def _host_buffer(size: int, seed: int) -> ctypes.Array[ctypes.c_char]:
    pattern = bytes((i * 131 + seed * 7 + (i >> 8)) & 0xFF for i in range(4096))
    data = (pattern * (size // len(pattern) + 1))[:size]
    return ctypes.create_string_buffer(data, size)


def _test_device(
    cu: CudaDriver, index: int, nvrtc: Nvrtc | None, result: DeviceResult
) -> tuple[ctypes.c_void_p, Any]:
    """Create a context and check memory and a kernel; returns (ctx, kernel or None)."""
    dev = ctypes.c_int()
    cu.check(f"cuDeviceGet({index})", cu.cuDeviceGet(ctypes.byref(dev), index))
    name = ctypes.create_string_buffer(256)
    cu.check("cuDeviceGetName", cu.cuDeviceGetName(name, 256, dev.value))
    result.name = name.value.decode("utf-8", "replace")
    major, minor = ctypes.c_int(), ctypes.c_int()
    cu.cuDeviceGetAttribute(
        ctypes.byref(major), CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, dev.value
    )
    cu.cuDeviceGetAttribute(
        ctypes.byref(minor), CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, dev.value
    )
    result.compute_capability = f"{major.value}.{minor.value}"
    total = ctypes.c_size_t()
    if cu.cuDeviceTotalMem(ctypes.byref(total), dev.value) == 0:
        result.total_memory_mib = total.value // (1024 * 1024)

    ctx = ctypes.c_void_p()
    cu.check(f"cuCtxCreate(device {index})", cu.cuCtxCreate(ctypes.byref(ctx), 0, dev.value))

    dptr = ctypes.c_uint64()
    cu.check(f"cuMemAlloc({COPY_BYTES} bytes)", cu.cuMemAlloc(ctypes.byref(dptr), COPY_BYTES))
    try:
        src = _host_buffer(COPY_BYTES, index)
        dst = ctypes.create_string_buffer(COPY_BYTES)
        cu.check("cuMemcpyHtoD", cu.cuMemcpyHtoD(dptr.value, src, COPY_BYTES))
        cu.check("cuMemcpyDtoH", cu.cuMemcpyDtoH(dst, dptr.value, COPY_BYTES))
        result.copy_ok = dst.raw == src.raw
        if not result.copy_ok:
            bad = next(i for i in range(COPY_BYTES) if dst.raw[i] != src.raw[i])
            result.notes.append(f"copy returned different bytes from offset {bad}")
    finally:
        cu.cuMemFree(dptr.value)

    if nvrtc is None:
        result.notes.append("kernel not tested: NVRTC (libnvrtc.so) not found")
        return ctx, None
    try:
        ptx = nvrtc.compile_ptx(KERNEL_SOURCE, f"compute_{major.value}{minor.value}")
    except RuntimeError as exc:
        result.kernel_ok = False
        result.notes.append(str(exc))
        return ctx, None
    module = ctypes.c_void_p()
    rc = cu.cuModuleLoadData(ctypes.byref(module), ptx)
    if rc != 0:
        result.kernel_ok = False
        hint = ""
        if rc == CUDA_ERROR_UNSUPPORTED_PTX_VERSION:
            hint = f" (NVRTC {nvrtc.version()} makes PTX newer than this driver accepts)"
        result.notes.append(f"cuModuleLoadData: {cu.error_name(rc)}{hint}")
        return ctx, None
    func = ctypes.c_void_p()
    cu.check("cuModuleGetFunction", cu.cuModuleGetFunction(ctypes.byref(func), module, KERNEL_NAME))
    result.kernel_ok = _run_kernel(cu, func)
    if not result.kernel_ok:
        result.notes.append("kernel y = 2*x + 1 returned wrong values")
    return ctx, (module, func)


def _run_kernel(cu: CudaDriver, func: ctypes.c_void_p) -> bool:
    n = KERNEL_N
    nbytes = n * 4
    host_x = (ctypes.c_float * n)(*[i * 0.5 for i in range(n)])
    host_y = (ctypes.c_float * n)()
    dx, dy = ctypes.c_uint64(), ctypes.c_uint64()
    cu.check("cuMemAlloc", cu.cuMemAlloc(ctypes.byref(dx), nbytes))
    cu.check("cuMemAlloc", cu.cuMemAlloc(ctypes.byref(dy), nbytes))
    try:
        cu.check("cuMemcpyHtoD", cu.cuMemcpyHtoD(dx.value, host_x, nbytes))
        _launch(cu, func, dx, dy, n)
        cu.check("cuCtxSynchronize", cu.cuCtxSynchronize())
        cu.check("cuMemcpyDtoH", cu.cuMemcpyDtoH(host_y, dy.value, nbytes))
    finally:
        cu.cuMemFree(dx.value)
        cu.cuMemFree(dy.value)
    # 2 * (i / 2) + 1 is exact in float32 for these i.
    return all(host_y[i] == float(i + 1) for i in range(n))


def _launch(cu: CudaDriver, func: ctypes.c_void_p, dx: Any, dy: Any, n: int) -> None:
    a, b, count = ctypes.c_float(2.0), ctypes.c_float(1.0), ctypes.c_int(n)
    x_arg, y_arg = ctypes.c_uint64(dx.value), ctypes.c_uint64(dy.value)
    args: list[Any] = [x_arg, y_arg, a, b, count]
    params = (ctypes.c_void_p * len(args))(*[ctypes.addressof(v) for v in args])
    threads = 256
    blocks = (n + threads - 1) // threads
    cu.check(
        "cuLaunchKernel",
        cu.cuLaunchKernel(func, blocks, 1, 1, threads, 1, 1, 0, None, params, None),
    )


def _load_worker(
    cu: CudaDriver, ctx: ctypes.c_void_p, kernel: Any, stop: threading.Event, errors: list[str]
) -> None:
    """Keep the GPU and its PCIe link busy until ``stop`` is set (10 s at most)."""
    if cu.cuCtxSetCurrent(ctx) != 0:
        errors.append("cuCtxSetCurrent failed in the load thread")
        return
    host = ctypes.c_void_p()
    dptr = ctypes.c_uint64()
    if cu.cuMemAllocHost(ctypes.byref(host), LOAD_BYTES) != 0:
        errors.append(f"cuMemAllocHost({LOAD_BYTES}) failed")
        return
    try:
        if cu.cuMemAlloc(ctypes.byref(dptr), LOAD_BYTES) != 0:
            errors.append(f"cuMemAlloc({LOAD_BYTES}) failed in the load thread")
            return
        deadline = time.monotonic() + 10.0
        while not stop.is_set() and time.monotonic() < deadline:
            rc = cu.cuMemcpyHtoD(dptr.value, host, LOAD_BYTES)
            rc = rc or cu.cuMemcpyDtoH(host, dptr.value, LOAD_BYTES)
            if rc == 0 and kernel is not None:
                n = LOAD_BYTES // 8
                _launch(cu, kernel[1], dptr, ctypes.c_uint64(dptr.value + LOAD_BYTES // 2), n)
                rc = cu.cuCtxSynchronize()
            if rc != 0:
                errors.append(f"load loop: {cu.error_name(rc)}")
                return
        cu.cuMemFree(dptr.value)
    except CudaFailure as exc:
        errors.append(str(exc))
    finally:
        cu.cuMemFreeHost(host)


def driver_version(libcuda: str = "libcuda.so.1") -> dict[str, Any]:
    """cuDriverGetVersion (needs no cuInit, touches no GPU): {"version": 12020} or {"error"}."""
    try:
        lib = ctypes.CDLL(libcuda)
        get_version = _bind(lib, "cuDriverGetVersion", [c_int_p])
    except (OSError, AttributeError) as exc:
        return {"error": f"cannot load {libcuda}: {exc}"}
    version = ctypes.c_int()
    rc = get_version(ctypes.byref(version))
    if rc != 0:
        return {"error": f"cuDriverGetVersion failed: CUDA error {rc}"}
    return {"version": int(version.value)}


def selftest(
    nvrtc_paths: list[str],
    during_load: Callable[[], Any] | None = None,
    warmup_s: float = 1.0,
    libcuda: str = "libcuda.so.1",
) -> CudaReport:
    """Run the driver API self-test on every GPU; see the module docstring."""
    report = CudaReport()
    try:
        cu = CudaDriver(libcuda)
    except OSError as exc:
        report.error = f"cannot load libcuda.so.1: {exc}"
        report.error_name = "LIBCUDA_NOT_LOADABLE"
        return report
    except AttributeError as exc:
        report.error = f"libcuda.so.1 lacks a driver API entry point: {exc}"
        report.error_name = "LIBCUDA_INCOMPLETE"
        return report

    nvrtc: Nvrtc | None = None
    nvrtc_errors = []
    for path in nvrtc_paths:
        try:
            nvrtc = Nvrtc(path)
        except (OSError, AttributeError) as exc:
            nvrtc_errors.append(f"{path}: {exc}")
            continue
        report.nvrtc = path
        report.nvrtc_version = nvrtc.version()
        break

    contexts: list[tuple[ctypes.c_void_p, Any]] = []
    try:
        cu.check("cuInit", cu.cuInit(0))
        version = ctypes.c_int()
        if cu.cuDriverGetVersion(ctypes.byref(version)) == 0:
            report.driver_cuda_version = version.value
        count = ctypes.c_int()
        cu.check("cuDeviceGetCount", cu.cuDeviceGetCount(ctypes.byref(count)))
        report.device_count = count.value
        if count.value == 0:
            report.error = "cuDeviceGetCount: no CUDA device"
            report.error_name = "CUDA_ERROR_NO_DEVICE"
            return report
        for index in range(count.value):
            dev_result = DeviceResult(index=index)
            report.devices.append(dev_result)
            if nvrtc is None and nvrtc_errors:
                dev_result.notes.extend(nvrtc_errors)
            contexts.append(_test_device(cu, index, nvrtc, dev_result))
        report.during_load, report.load_seconds = _with_load(cu, contexts, during_load, warmup_s)
    except CudaFailure as exc:
        report.error = str(exc)
        report.error_name = exc.name
    finally:
        for ctx, kernel in contexts:
            cu.cuCtxSetCurrent(ctx)
            if kernel is not None:
                cu.cuModuleUnload(kernel[0])
            cu.cuCtxDestroy(ctx)
    return report


def _with_load(
    cu: CudaDriver,
    contexts: list[tuple[ctypes.c_void_p, Any]],
    during_load: Callable[[], Any] | None,
    warmup_s: float,
) -> tuple[Any, float]:
    if during_load is None:
        return None, 0.0
    stop = threading.Event()
    errors: list[str] = []
    threads = [
        threading.Thread(target=_load_worker, args=(cu, ctx, kernel, stop, errors), daemon=True)
        for ctx, kernel in contexts
    ]
    start = time.monotonic()
    for thread in threads:
        thread.start()
    try:
        time.sleep(warmup_s)
        value = during_load()
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=15.0)
    if errors:
        raise CudaFailure("load phase", -1, "; ".join(errors))
    return value, time.monotonic() - start


@dataclass
class CudnnReport:
    path: str
    version: str | None = None
    cudart_version: int | None = None
    handle_ok: bool | None = None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CudnnReport:
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in fields})


def cudnn_selftest(path: str) -> CudnnReport:
    """Load libcudnn, read its version and create (and destroy) a handle."""
    report = CudnnReport(path=path)
    try:
        lib = ctypes.CDLL(path)
        get_version = _bind(lib, "cudnnGetVersion", [], ctypes.c_size_t)
    except (OSError, AttributeError) as exc:
        report.error = f"cannot load {path}: {exc}"
        return report
    report.version = cudnn_version_from_int(int(get_version()))
    with contextlib.suppress(AttributeError):
        report.cudart_version = int(_bind(lib, "cudnnGetCudartVersion", [], ctypes.c_size_t)())
    create = _bind(lib, "cudnnCreate", [c_void_pp])
    destroy = _bind(lib, "cudnnDestroy", [ctypes.c_void_p])
    handle = ctypes.c_void_p()
    status = create(ctypes.byref(handle))
    if status != 0:
        report.handle_ok = False
        message = f"status {status}"
        try:
            err = _bind(lib, "cudnnGetErrorString", [ctypes.c_int], ctypes.c_char_p)(status)
            if err:
                message = err.decode("ascii", "replace")
        except AttributeError:
            pass
        report.error = f"cudnnCreate: {message}"
        return report
    destroy(handle)
    report.handle_ok = True
    return report
