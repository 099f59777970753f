"""One CUDA device as the TensorRT backend uses it: device and pinned host memory, one stream,
events for GPU timing and, optionally, a captured CUDA graph.

Two ways in, tried in this order: pycuda (what JetPack images and NVIDIA's TensorRT samples use)
and cuda-python (NVIDIA's own bindings). Both work in the device's primary context, the one
TensorRT, a CUDA runtime API user, works in. Graph capture goes through cuda-python, which wraps
the runtime's stream-capture calls one to one; a job that asks for a CUDA graph therefore needs it.
"""
from __future__ import annotations

import ctypes
import importlib.util
from typing import Any, Callable, Protocol, Sequence

import numpy as np

PYCUDA = "pycuda"
CUDA_PYTHON = "cuda-python"


class CudaUnavailableError(Exception):
    """No usable CUDA Python binding, or no device, on this board; says which."""


class CudaCallError(RuntimeError):
    """A CUDA call failed mid-job."""


class CudaDevice(Protocol):
    api: str
    name: str                   # e.g. "Orin", "NVIDIA GeForce RTX 3070"
    compute_capability: str     # e.g. "8.7"
    stream_handle: int          # what TensorRT's enqueue takes

    def alloc(self, nbytes: int) -> int: ...
    def pinned_empty(self, shape: Sequence[int], dtype: str) -> np.ndarray: ...
    def to_device_async(self, device_ptr: int, host: np.ndarray) -> None: ...
    def to_host_async(self, host: np.ndarray, device_ptr: int) -> None: ...
    def new_event(self) -> Any: ...
    def record(self, event: Any) -> None: ...
    def elapsed_ms(self, start: Any, end: Any) -> float: ...
    def synchronize(self) -> None: ...
    def capture_graph(self, enqueue: Callable[[], None]) -> None: ...
    def launch_graph(self) -> None: ...
    def close(self) -> None: ...


def select_cuda_api(available: Sequence[str], need_graphs: bool) -> str:
    """pycuda first, cuda-python when pycuda is missing or a CUDA graph is wanted."""
    order = (CUDA_PYTHON,) if need_graphs else (PYCUDA, CUDA_PYTHON)
    for api in order:
        if api in available:
            return api
    wanted = "cuda-python (CUDA graph capture needs it)" if need_graphs else "pycuda or cuda-python"
    raise CudaUnavailableError(f"no CUDA Python binding for TensorRT's buffers: install {wanted}")


def available_cuda_apis() -> list[str]:
    found = []
    if importlib.util.find_spec("pycuda") is not None:
        found.append(PYCUDA)
    if importlib.util.find_spec("cuda") is not None:
        found.append(CUDA_PYTHON)
    return found


def open_cuda_device(need_graphs: bool) -> CudaDevice:
    """Device 0 (CUDA_VISIBLE_DEVICES picks which one that is), through the API select_cuda_api picks."""
    api = select_cuda_api(available_cuda_apis(), need_graphs)
    try:
        return PycudaDevice() if api == PYCUDA else CudaPythonDevice()
    except (ImportError, OSError) as exc:
        raise CudaUnavailableError(f"{api} is installed but cannot load: {exc}") from exc


class PycudaDevice:
    api = PYCUDA

    def __init__(self) -> None:
        import pycuda.driver as cuda

        self._cuda = cuda
        try:
            cuda.init()
            device = cuda.Device(0)
        except cuda.Error as exc:
            raise CudaUnavailableError(f"no CUDA device: {exc}") from exc
        self.name = device.name()
        self.compute_capability = "{}.{}".format(*device.compute_capability())
        self._context = device.retain_primary_context()
        self._context.push()
        self._stream = cuda.Stream()
        self.stream_handle = self._stream.handle
        self._device_memory: list[Any] = []
        self._host_memory: list[np.ndarray] = []

    def alloc(self, nbytes: int) -> int:
        allocation = self._cuda.mem_alloc(max(nbytes, 1))
        self._device_memory.append(allocation)
        return int(allocation)

    def pinned_empty(self, shape: Sequence[int], dtype: str) -> np.ndarray:
        array = self._cuda.pagelocked_empty(tuple(shape), np.dtype(dtype))
        self._host_memory.append(array)
        return array

    def to_device_async(self, device_ptr: int, host: np.ndarray) -> None:
        self._cuda.memcpy_htod_async(device_ptr, host, self._stream)

    def to_host_async(self, host: np.ndarray, device_ptr: int) -> None:
        self._cuda.memcpy_dtoh_async(host, device_ptr, self._stream)

    def new_event(self) -> Any:
        return self._cuda.Event()

    def record(self, event: Any) -> None:
        event.record(self._stream)

    def elapsed_ms(self, start: Any, end: Any) -> float:
        end.synchronize()
        return float(end.time_since(start))

    def synchronize(self) -> None:
        self._stream.synchronize()

    def capture_graph(self, enqueue: Callable[[], None]) -> None:
        raise CudaUnavailableError("CUDA graph capture goes through cuda-python; install it")

    def launch_graph(self) -> None:
        raise CudaUnavailableError("no CUDA graph was captured")

    def close(self) -> None:
        """Free what was allocated while the context is still current, then release it."""
        self._stream.synchronize()
        for allocation in self._device_memory:
            allocation.free()
        for array in self._host_memory:
            array.base.free()  # pinned memory belongs to the context: free it before letting go
        self._device_memory, self._host_memory = [], []
        self._context.pop()
        self._context.detach()


def _import_cudart() -> Any:
    try:
        from cuda.bindings import runtime as cudart  # cuda-python 12.6+; 13.0 removed `cuda.cudart`
    except ImportError:
        from cuda import cudart  # cuda-python 11.x / early 12.x, as JetPack 5/6 pip wheels install
    return cudart


def unwrap(result: tuple, success: Any, call: str) -> Any:
    """cuda-python returns (error, *values): raise on an error, else the value (or values)."""
    error, values = result[0], result[1:]
    if error != success:
        raise CudaCallError(f"{call} failed: {getattr(error, 'name', error)}")
    if not values:
        return None
    return values[0] if len(values) == 1 else values


def c_string(raw: Any) -> str:
    """A char[] field as cuda-python returns it (bytes, NUL-padded) as text."""
    text = raw.decode(errors="replace") if isinstance(raw, (bytes, bytearray)) else str(raw)
    return text.split("\0", 1)[0].strip()


class CudaPythonDevice:
    api = CUDA_PYTHON

    def __init__(self) -> None:
        self._rt = _import_cudart()
        self._call(self._rt.cudaSetDevice(0), "cudaSetDevice")  # binds the primary context
        props = self._call(self._rt.cudaGetDeviceProperties(0), "cudaGetDeviceProperties")
        self.name = c_string(props.name)
        self.compute_capability = f"{props.major}.{props.minor}"
        self._stream = self._call(self._rt.cudaStreamCreate(), "cudaStreamCreate")
        self.stream_handle = int(self._stream)
        self._device_ptrs: list[int] = []
        self._host_ptrs: list[int] = []
        self._events: list[Any] = []
        self._graph: Any = None
        self._graph_exec: Any = None

    def _call(self, result: tuple, call: str) -> Any:
        return unwrap(result, self._rt.cudaError_t.cudaSuccess, call)

    def alloc(self, nbytes: int) -> int:
        ptr = int(self._call(self._rt.cudaMalloc(max(nbytes, 1)), "cudaMalloc"))
        self._device_ptrs.append(ptr)
        return ptr

    def pinned_empty(self, shape: Sequence[int], dtype: str) -> np.ndarray:
        count = int(np.prod(shape, dtype=np.int64))
        nbytes = max(count * np.dtype(dtype).itemsize, 1)
        ptr = int(self._call(self._rt.cudaMallocHost(nbytes), "cudaMallocHost"))
        self._host_ptrs.append(ptr)
        buffer = (ctypes.c_byte * nbytes).from_address(ptr)
        return np.frombuffer(buffer, dtype=np.dtype(dtype), count=count).reshape(tuple(shape))

    def to_device_async(self, device_ptr: int, host: np.ndarray) -> None:
        kind = self._rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._call(self._rt.cudaMemcpyAsync(device_ptr, host.ctypes.data, host.nbytes, kind, self._stream),
                   "cudaMemcpyAsync H2D")

    def to_host_async(self, host: np.ndarray, device_ptr: int) -> None:
        kind = self._rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._call(self._rt.cudaMemcpyAsync(host.ctypes.data, device_ptr, host.nbytes, kind, self._stream),
                   "cudaMemcpyAsync D2H")

    def new_event(self) -> Any:
        event = self._call(self._rt.cudaEventCreate(), "cudaEventCreate")
        self._events.append(event)
        return event

    def record(self, event: Any) -> None:
        self._call(self._rt.cudaEventRecord(event, self._stream), "cudaEventRecord")

    def elapsed_ms(self, start: Any, end: Any) -> float:
        self._call(self._rt.cudaEventSynchronize(end), "cudaEventSynchronize")
        return float(self._call(self._rt.cudaEventElapsedTime(start, end), "cudaEventElapsedTime"))

    def synchronize(self) -> None:
        self._call(self._rt.cudaStreamSynchronize(self._stream), "cudaStreamSynchronize")

    def capture_graph(self, enqueue: Callable[[], None]) -> None:
        # Thread-local capture, as trtexec does: TensorRT may make capture-unsafe calls on other threads.
        mode = self._rt.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal
        self._call(self._rt.cudaStreamBeginCapture(self._stream, mode), "cudaStreamBeginCapture")
        try:
            enqueue()
        finally:
            self._graph = self._call(self._rt.cudaStreamEndCapture(self._stream), "cudaStreamEndCapture")
        # cudaGraphInstantiate's signature changed in CUDA 12; the WithFlags form is the same in 11.4+ and 12.
        self._graph_exec = self._call(self._rt.cudaGraphInstantiateWithFlags(self._graph, 0),
                                      "cudaGraphInstantiateWithFlags")

    def launch_graph(self) -> None:
        self._call(self._rt.cudaGraphLaunch(self._graph_exec, self._stream), "cudaGraphLaunch")

    def close(self) -> None:
        rt = self._rt
        rt.cudaStreamSynchronize(self._stream)
        if self._graph_exec is not None:
            rt.cudaGraphExecDestroy(self._graph_exec)
        if self._graph is not None:
            rt.cudaGraphDestroy(self._graph)
        for event in self._events:
            rt.cudaEventDestroy(event)
        for ptr in self._device_ptrs:
            rt.cudaFree(ptr)
        for ptr in self._host_ptrs:
            rt.cudaFreeHost(ptr)
        rt.cudaStreamDestroy(self._stream)
        self._device_ptrs, self._host_ptrs, self._events = [], [], []
