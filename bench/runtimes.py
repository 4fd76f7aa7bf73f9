"""The runtimes a bench compares: PyTorch eager, ONNX Runtime (custom ops), TensorRT.

Each runtime is prepared for one resolution, then offers ``infer(feeds) -> logits`` (host arrays
in, host array out: what parity compares) and ``step(feeds)`` (one timed iteration on staged
inputs, returning ``{metric: ms}`` for ``latency.measure``).

A runtime that cannot run on this machine raises ``Skip`` with the reason and whatever it did get
done (e.g. the engine build time); the report lists it as skipped, never drops it.

Timing per runtime (stated in every report row as ``timing``):
* CPU: host ``perf_counter_ns`` around one synchronous call;
* PyTorch / TensorRT on CUDA: CUDA events around H2D copy, compute and D2H copy of one iteration
  (``latency`` = H2D + compute + D2H, as trtexec's "Latency"; ``compute`` = trtexec's
  "GPU Compute Time"), plus the host wall time of the iteration;
* ONNX Runtime CUDA provider: ORT exposes no events, so host clock: ``compute`` = a synchronous
  ``run_with_iobinding`` on device-resident inputs and outputs, ``latency`` = ``run`` with host
  arrays (transfers included).
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import NativeLibraryError, RemamberError
from .latency import Step, cpu_timed

# The fixed ONNX I/O names (COMMON.md), the same as remamber.export.onnx_export's; repeated here so
# that listing the runtimes (argument parsing, --help) does not import the exporter.
INPUT_NAMES = ("image", "input_ids", "attention_mask")
OUTPUT_NAME = "logits"


class Skip(Exception):
    """This runtime cannot run here; ``reason`` says why and how to change that."""

    def __init__(self, reason: str, details: dict | None = None):
        super().__init__(reason)
        self.reason = reason
        self.details = details or {}


@dataclass
class BenchContext:
    """What every runtime needs: the model, run settings and a shared ONNX export per resolution."""

    model: object  # torch.nn.Module in eval mode
    precision: str
    threads: int | None
    batch: int
    workdir: Path
    stage: Callable[[str], None] = lambda message: None  # progress messages for long stages
    metadata: dict = field(default_factory=dict)  # ONNX metadata: how to rebuild the model (for `compare`)
    _onnx: dict = field(default_factory=dict)  # resolution -> (path, seconds)

    def onnx_for(self, resolution: int) -> tuple[Path, float]:
        """Export once per resolution (ORT and TensorRT share the file); returns (path, export seconds)."""
        if resolution not in self._onnx:
            from ..export.onnx_export import export_onnx

            path = self.workdir / f"remamber_{resolution}_{self.precision}.onnx"
            self.stage(f"exporting ONNX at {resolution} ({self.precision}) to {path}")
            t0 = time.perf_counter()
            export_onnx(self.model, path, resolution, precision=self.precision, metadata=self.metadata)
            self._onnx[resolution] = (path, time.perf_counter() - t0)
        return self._onnx[resolution]


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def torch_device_name() -> str:
    import torch

    return f"cuda:0 ({torch.cuda.get_device_name(0)})"


class Runtime(ABC):
    name: str = ""
    is_reference = False  # True when this runtime runs exactly what reference_logits runs

    def __init__(self, ctx: BenchContext, resolution: int):
        self.ctx = ctx
        self.resolution = resolution
        self.device = "cpu"
        self.timing = "host perf_counter_ns around one synchronous call"
        self.details: dict = {}

    @abstractmethod
    def infer(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        """Host arrays in, float32 host logits (B,1,S,S) out."""

    @abstractmethod
    def step(self, feeds: dict[str, np.ndarray]) -> Step:
        """One timed iteration on ``feeds`` (staged once, reused every iteration)."""

    def close(self) -> None:
        pass


# ------------------------------------------------------------------------------------ CUDA timing

def cuda_event_step(stage_in: Callable[[], None], compute: Callable[[], None], stage_out: Callable[[], None]) -> Step:
    """A step timed with CUDA events on the current stream: H2D, compute, D2H, and host wall time."""
    import torch

    events = [torch.cuda.Event(enable_timing=True) for _ in range(4)]

    def step() -> dict[str, float]:
        t0 = time.perf_counter_ns()
        events[0].record()
        stage_in()
        events[1].record()
        compute()
        events[2].record()
        stage_out()
        events[3].record()
        events[3].synchronize()
        host_ms = (time.perf_counter_ns() - t0) / 1e6
        return {
            "latency": events[0].elapsed_time(events[3]),
            "compute": events[1].elapsed_time(events[2]),
            "h2d": events[0].elapsed_time(events[1]),
            "d2h": events[2].elapsed_time(events[3]),
            "host_walltime": host_ms,
        }

    return step


# ---------------------------------------------------------------------------------------- PyTorch

def reference_logits(model, feeds: dict[str, np.ndarray]) -> np.ndarray:
    """The parity reference: PyTorch float32 on CPU with the exact reference scan backend."""
    import torch

    from ..ops import use_backend

    with torch.inference_mode(), use_backend("reference"):
        args = [torch.from_numpy(feeds[n]) for n in INPUT_NAMES]
        return model(*args).float().numpy()


class TorchRuntime(Runtime):
    """PyTorch eager with the scan backend ``remamber.ops`` picks (a compiled kernel when available)."""

    name = "torch"

    def __init__(self, ctx: BenchContext, resolution: int):
        super().__init__(ctx, resolution)
        import torch

        from ..ops import resolve_backend

        self.torch_device = torch.device("cuda" if cuda_available() else "cpu")
        if ctx.precision == "fp16" and self.torch_device.type == "cpu":
            raise Skip(
                "PyTorch fp16 needs a GPU (CPU half-precision kernels are emulated and not a deployment "
                "target); fp16 runtimes are still compared with the fp32 reference"
            )
        self.backend = resolve_backend(self.torch_device.type).name
        self.model = ctx.model.to(self.torch_device)
        self.device = "cpu" if self.torch_device.type == "cpu" else torch_device_name()
        self.details = {"scan_backend": self.backend, "autocast": ctx.precision == "fp16",
                        "threads": torch.get_num_threads()}
        # Same computation as reference_logits: CPU, fp32, reference scan backend.
        self.is_reference = self.torch_device.type == "cpu" and ctx.precision == "fp32" and self.backend == "reference"
        if self.torch_device.type == "cuda":
            self.timing = "CUDA events (H2D, compute, D2H) on the current stream"

    def _forward(self, args):
        import torch

        with torch.inference_mode(), torch.autocast(
            self.torch_device.type, dtype=torch.float16, enabled=self.ctx.precision == "fp16"
        ):
            return self.model(*args)

    def infer(self, feeds):
        import torch

        args = [torch.from_numpy(feeds[n]).to(self.torch_device) for n in INPUT_NAMES]
        return self._forward(args).float().cpu().numpy()

    def step(self, feeds):
        import torch

        if self.torch_device.type == "cpu":
            args = [torch.from_numpy(feeds[n]) for n in INPUT_NAMES]
            return cpu_timed(lambda: self._forward(args))
        # Pinned host buffers both ways, so the timed copies are true asynchronous DMA transfers.
        host = [torch.from_numpy(feeds[n]).pin_memory() for n in INPUT_NAMES]
        dev = [h.to(self.torch_device) for h in host]
        batch = feeds["image"].shape[0]
        host_out = torch.empty((batch, 1, self.resolution, self.resolution), dtype=torch.float32).pin_memory()
        out = {}

        def stage_in():
            for d, h in zip(dev, host):
                d.copy_(h, non_blocking=True)

        def compute():
            out["logits"] = self._forward(dev)

        def stage_out():
            host_out.copy_(out["logits"], non_blocking=True)

        return cuda_event_step(stage_in, compute, stage_out)

    def close(self):
        self.model.to("cpu")


# ----------------------------------------------------------------------------------- ONNX Runtime

class OrtRuntime(Runtime):
    """ONNX Runtime with the remamber custom-op library; CUDA provider when it and a GPU are present."""

    name = "ort"

    def __init__(self, ctx: BenchContext, resolution: int):
        super().__init__(ctx, resolution)
        import onnxruntime as ort

        from .. import native
        from ..export.ort_session import make_session

        try:  # check the library before spending time on an export
            native.library_path("ort")
        except NativeLibraryError as exc:
            raise Skip(f"ONNX Runtime custom-op library not built: {exc}") from None
        path, export_s = ctx.onnx_for(resolution)
        use_cuda = "CUDAExecutionProvider" in ort.get_available_providers() and cuda_available()
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if use_cuda else ["CPUExecutionProvider"]
        ctx.stage(f"creating ONNX Runtime session ({providers[0]}) at {resolution}")
        t0 = time.perf_counter()
        self.session = make_session(path, providers=providers, threads=ctx.threads)
        self.providers = list(self.session.get_providers())
        self.on_cuda = self.providers[0] == "CUDAExecutionProvider"
        self.device = torch_device_name() if self.on_cuda else "cpu"
        self.details = {
            "providers": self.providers,
            "onnx": str(path),
            "export_s": export_s,
            "session_s": time.perf_counter() - t0,
            "onnxruntime": ort.__version__,
            "intra_op_threads": ctx.threads or "ORT default (one per physical core)",
        }
        if self.on_cuda:
            self.timing = ("host clock; compute = run_with_iobinding on device-resident inputs/outputs, "
                           "latency = run with host arrays (H2D/D2H included)")

    def infer(self, feeds):
        return np.asarray(self.session.run([OUTPUT_NAME], feeds)[0], dtype=np.float32)

    def step(self, feeds):
        run = lambda: self.session.run([OUTPUT_NAME], feeds)  # noqa: E731
        if not self.on_cuda:
            return cpu_timed(run)
        import onnxruntime as ort

        binding = self.session.io_binding()
        for name in INPUT_NAMES:
            binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(feeds[name], "cuda", 0))
        binding.bind_output(OUTPUT_NAME, "cuda", 0)

        def step():
            t0 = time.perf_counter_ns()
            self.session.run_with_iobinding(binding)  # synchronous: returns when the device is done
            t1 = time.perf_counter_ns()
            run()
            t2 = time.perf_counter_ns()
            return {"latency": (t2 - t1) / 1e6, "compute": (t1 - t0) / 1e6}

        return step


# -------------------------------------------------------------------------------------- TensorRT

# Compute capabilities TensorRT-RTX 1.7 targets (its ComputeCapability enum; TOOLCHAIN.md): no SM90,
# so an RTX engine cannot run on H100/H200.
TRT_RTX_CAPABILITIES = {"7.5", "8.0", "8.6", "8.9", "12.0", "12.1"}


def _gpu_capability() -> str:
    import torch

    major, minor = torch.cuda.get_device_capability(0)
    return f"{major}.{minor}"


class TrtRuntime(Runtime):
    """A TensorRT engine with the remamber plugin: built wherever a builder imports, run only on a GPU.

    The engine is built by ``remamber.export.engine_builder`` (full TensorRT preferred, else
    TensorRT-RTX, which builds on CPU) for exactly the bench's batch size.
    """

    name = "trt"

    def __init__(self, ctx: BenchContext, resolution: int):
        super().__init__(ctx, resolution)
        from .. import native
        from ..export import engine_builder

        try:
            flavour = engine_builder.select_flavour()
        except NativeLibraryError as exc:
            raise Skip(f"no TensorRT builder: {exc}") from None
        try:
            native.library_path("trt")
            flavour.preflight()
        except NativeLibraryError as exc:
            raise Skip(f"{flavour.display_name} cannot load the plugin here: {exc}") from None
        onnx_path, export_s = ctx.onnx_for(resolution)
        engine_path = onnx_path.with_suffix(".engine")
        ctx.stage(f"building {flavour.display_name} engine at {resolution} ({ctx.precision}, batch {ctx.batch})")
        try:
            result = engine_builder.build_engine(
                onnx_path, engine_path, precision=ctx.precision,
                batch=engine_builder.BatchRange(ctx.batch, ctx.batch, ctx.batch), flavour=flavour,
            )
        except NativeLibraryError as exc:  # plugin library refused / wrong version: a setup problem, not a bug
            raise Skip(f"{flavour.display_name} could not use the plugin: {exc}") from None
        has_gpu = cuda_available()
        self.details = {
            "tensorrt": flavour.display_name,
            "onnx": str(onnx_path),
            "engine": str(engine_path),
            "export_s": export_s,
            "engine_build_s": result.seconds,
            "engine_bytes": result.sidecar["engine_bytes"],
            "trtexec": result.trtexec,
        }
        built = f"engine built with {flavour.display_name} {'on GPU' if has_gpu else 'on CPU'} in {result.seconds:.1f} s"
        if not has_gpu:
            raise Skip(f"{built}; no GPU to run it", self.details)
        if flavour.name == "tensorrt_rtx" and _gpu_capability() not in TRT_RTX_CAPABILITIES:
            raise Skip(
                f"{built}; TensorRT-RTX does not target this GPU (compute capability {_gpu_capability()}); "
                "install full TensorRT to run it", self.details,
            )
        engine_builder.check_engine_sidecar(engine_path, flavour)  # also registers the plugin
        self.trt = flavour.trt
        self._load(engine_path)
        self.device = torch_device_name()
        self.timing = "CUDA events (H2D, compute, D2H) on the engine's stream"

    def _load(self, engine_path: Path) -> None:
        import torch

        logger = self.trt.Logger(self.trt.Logger.WARNING)
        self.runtime = self.trt.Runtime(logger)
        self.engine = self.runtime.deserialize_cuda_engine(engine_path.read_bytes())
        if self.engine is None:
            raise RemamberError(f"TensorRT could not deserialize {engine_path}; rebuild it with this TensorRT version")
        self.context = self.engine.create_execution_context()
        self.torch = torch
        self.stream = torch.cuda.Stream()  # TensorRT warns on (and serializes with) the default stream

    def _bind(self, feeds):
        """Device buffers for ``feeds`` and the output, bound to the execution context."""
        torch = self.torch
        dev = {}
        for name in INPUT_NAMES:
            dev[name] = torch.from_numpy(feeds[name]).cuda()
            self.context.set_input_shape(name, tuple(feeds[name].shape))
            self.context.set_tensor_address(name, dev[name].data_ptr())
        shape = tuple(self.context.get_tensor_shape(OUTPUT_NAME))
        dev[OUTPUT_NAME] = torch.empty(shape, dtype=torch.float32, device="cuda")
        self.context.set_tensor_address(OUTPUT_NAME, dev[OUTPUT_NAME].data_ptr())
        return dev

    def _execute(self):
        if not self.context.execute_async_v3(self.stream.cuda_stream):
            raise RemamberError("TensorRT execute_async_v3 failed; run with a TensorRT logger at VERBOSE to see why")

    def infer(self, feeds):
        with self.torch.cuda.stream(self.stream):
            dev = self._bind(feeds)
            self._execute()
            self.stream.synchronize()
            return dev[OUTPUT_NAME].cpu().numpy()

    def step(self, feeds):
        torch = self.torch
        dev = self._bind(feeds)
        torch.cuda.synchronize()  # the buffers were filled on the default stream; the engine uses self.stream
        host_in = {n: torch.from_numpy(feeds[n]).pin_memory() for n in INPUT_NAMES}
        host_out = torch.empty(tuple(dev[OUTPUT_NAME].shape), dtype=torch.float32).pin_memory()

        def stage_in():
            for n in INPUT_NAMES:
                dev[n].copy_(host_in[n], non_blocking=True)

        def stage_out():
            host_out.copy_(dev[OUTPUT_NAME], non_blocking=True)

        timed = cuda_event_step(stage_in, self._execute, stage_out)

        def step():
            with torch.cuda.stream(self.stream):  # copies, events and the engine on one stream
                return timed()

        return step


RUNTIMES: dict[str, type[Runtime]] = {"torch": TorchRuntime, "ort": OrtRuntime, "trt": TrtRuntime}
