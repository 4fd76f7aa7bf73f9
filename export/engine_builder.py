"""Build a TensorRT or TensorRT-RTX engine from a ReMamber ONNX graph with the scan plugins (SS2DScan, SelectiveScan).

One small adapter, ``TrtFlavour``, hides the two Python modules: full TensorRT (``import tensorrt``,
users' x86 boxes and Jetson) is preferred when importable, TensorRT-RTX (``import tensorrt_rtx``,
builds on CPU; our CI check) otherwise. What differs between them and between TensorRT 10 and 11:

- precision: an fp16 ONNX (``remamber-deploy export --precision fp16``) is strongly typed and is
  built with the STRONGLY_TYPED network flag (TensorRT >= 10, TensorRT 11, TensorRT-RTX). An fp32
  ONNX built at fp16 uses BuilderFlag.FP16 (weak typing), which only TensorRT 10 and older have;
  LayerNorm layers are then pinned to fp32 (PREFER_PRECISION_CONSTRAINTS) so their statistics
  do not overflow. TensorRT 11 / TensorRT-RTX refuse weak fp16 with a message that says to export
  fp16.
- TensorRT-RTX's ONNX parser aborts the whole process (no exception) when the unversioned
  ``libtensorrt_rtx.so`` is missing, so ``TrtFlavour.preflight`` checks for it before parsing.

Errors (missing plugin library, plugin version != "1", parser/builder failures, sidecar version
mismatch) are raised as RemamberError subclasses that list the parser/builder/plugin messages.
"""

from __future__ import annotations

import ctypes
import datetime
import hashlib
import importlib
import importlib.util
import json
import os
import platform
import shlex
import socket
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from remamber.errors import InputError, NativeLibraryError, RemamberError

from . import scan_onnx, ss2d_onnx
from remamber.atomic import write_bytes_atomic, write_text_atomic

PLUGIN_NAME = scan_onnx.OP_TYPE
PLUGIN_NAMESPACE = scan_onnx.DOMAIN
PLUGIN_VERSION = "1"
# Every op of the remamber domain is a plugin of the one library (getCreators returns all of them).
PLUGIN_OPS = (ss2d_onnx.OP_TYPE, scan_onnx.OP_TYPE)


def _is_plugin_message(line: str) -> bool:
    return any(f"{PLUGIN_NAMESPACE}::{op} node" in line for op in PLUGIN_OPS)
FLAVOURS = ("tensorrt", "tensorrt_rtx")
FIX_TRT_RTX = "bash scripts/fix_trt_rtx.sh"


class EngineBuildError(RemamberError):
    """Parsing or building failed; the message lists TensorRT's and the plugin's errors."""


class PluginVersionError(NativeLibraryError):
    """The plugin library (or an engine's sidecar) does not match the scan plugins' version 1."""


# ---- the adapter ---------------------------------------------------------------------------------

class TrtFlavour:
    """``tensorrt`` or ``tensorrt_rtx`` behind the few calls the builder needs."""

    def __init__(self, module_name: str):
        if module_name not in FLAVOURS:
            raise InputError(f"unknown TensorRT flavour {module_name!r}; use one of {', '.join(FLAVOURS)}")
        try:
            self.trt = importlib.import_module(module_name)
        except ImportError as exc:
            hint = ("pip install tensorrt-rtx-cu13==1.7.1.116 (the CPU-side builder)" if module_name == "tensorrt_rtx"
                    else "install TensorRT (x86: pip/apt from NVIDIA; Jetson: JetPack)")
            raise NativeLibraryError(f"cannot import {module_name}: {exc}; {hint}") from exc
        self.name = module_name
        self.version = getattr(self.trt, "__version__", "unknown")

    @property
    def display_name(self) -> str:
        return {"tensorrt": "TensorRT", "tensorrt_rtx": "TensorRT-RTX"}[self.name] + f" {self.version}"

    @property
    def has_weak_fp16(self) -> bool:
        """BuilderFlag.FP16 exists (TensorRT <= 10); TensorRT 11 and TensorRT-RTX are strongly typed."""
        return hasattr(self.trt.BuilderFlag, "FP16")

    @property
    def has_strongly_typed(self) -> bool:
        return hasattr(self.trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED")

    def preflight(self) -> None:
        """Problems that would otherwise abort the process inside the parser."""
        if self.name != "tensorrt_rtx":
            return
        spec = importlib.util.find_spec("tensorrt_rtx_libs")
        libdir = Path(next(iter(spec.submodule_search_locations))) if spec and spec.submodule_search_locations else None
        if libdir is not None and (libdir / "libtensorrt_rtx.so").exists():
            return
        try:
            ctypes.CDLL("libtensorrt_rtx.so")  # found on the loader path (LD_LIBRARY_PATH, ld.so.cache)
            return
        except OSError:
            pass
        where = f"{libdir}/libtensorrt_rtx.so" if libdir else "tensorrt_rtx_libs/libtensorrt_rtx.so"
        raise NativeLibraryError(
            f"TensorRT-RTX's ONNX parser needs the unversioned library {where} (a symlink to "
            f"libtensorrt_rtx.so.1, which the wheel does not ship); without it the process aborts on the "
            f"first plugin node. Create it with `{FIX_TRT_RTX}` (also run by `bash scripts/build_native.sh`)"
        )

    def load_plugin(self, op_types=(PLUGIN_NAME,)):
        """Register the plugin library and check it has a version-1 creator for every op in ``op_types``
        (the scan ops a graph uses), so a library built before an op existed is refused here and not as
        "Plugin not found" in the middle of parsing. Returns (library path, the first op's creator)."""
        from remamber import native

        path = native.library_path("trt")
        registry = native.load_trt_plugin(self.trt)
        creators = [self.find_creator(registry, op) for op in op_types]
        return path, creators[0]

    def find_creator(self, registry, op_type: str = PLUGIN_NAME):
        creators = list(getattr(registry, "all_creators", []) or [])
        ours = [c for c in creators if c.name == op_type and getattr(c, "plugin_namespace", "") == PLUGIN_NAMESPACE]
        if not ours:
            raise NativeLibraryError(
                f"the plugin library registered no {PLUGIN_NAMESPACE}::{op_type} creator in {self.display_name} "
                f"(registered: {sorted({c.name for c in creators})[:20]}); rebuild it with `bash scripts/build_native.sh`"
            )
        versions = sorted({str(c.plugin_version) for c in ours})
        if PLUGIN_VERSION not in versions:
            raise PluginVersionError(
                f"{PLUGIN_NAMESPACE}::{op_type} plugin version(s) {versions} found, but this project's graphs need "
                f"version {PLUGIN_VERSION!r}; rebuild the plugin from this checkout with `bash scripts/build_native.sh`"
            )
        return next(c for c in ours if str(c.plugin_version) == PLUGIN_VERSION)


def select_flavour(prefer: str | None = None) -> TrtFlavour:
    """``prefer`` "tensorrt"/"tensorrt_rtx", or None: full TensorRT when importable, else TensorRT-RTX."""
    if prefer:
        return TrtFlavour(prefer)
    if importlib.util.find_spec("tensorrt") is not None:
        try:
            return TrtFlavour("tensorrt")
        except NativeLibraryError:
            pass  # a stub or broken install: fall back to TensorRT-RTX
    if importlib.util.find_spec("tensorrt_rtx") is not None:
        return TrtFlavour("tensorrt_rtx")
    raise NativeLibraryError(
        "neither tensorrt nor tensorrt_rtx is importable; install TensorRT, or "
        "pip install tensorrt-rtx-cu13==1.7.1.116 to build engines on CPU"
    )


# ---- logging and progress ------------------------------------------------------------------------

class StderrCapture:
    """Capture file descriptor 2 around parse/build and replay it afterwards.

    The plugin reports through TensorRT's logger when the runtime hands it one (setLoggerFinder);
    TensorRT-RTX 1.7 hands it none, so the plugin writes its refusals to stderr instead. Capturing
    the descriptor lets the error we raise quote the plugin's own message either way.
    ``original`` is a file on the real stderr for progress bars while capturing.
    """

    def __enter__(self):
        import sys
        import tempfile

        sys.stderr.flush()
        self._saved = os.dup(2)
        self.original = os.fdopen(os.dup(self._saved), "w", buffering=1)
        self._tmp = tempfile.TemporaryFile(mode="w+b")
        os.dup2(self._tmp.fileno(), 2)
        self.text = ""
        return self

    def __exit__(self, *exc):
        import sys

        sys.stderr.flush()
        os.dup2(self._saved, 2)
        os.close(self._saved)
        self._tmp.seek(0)
        self.text = self._tmp.read().decode("utf-8", "replace")
        self._tmp.close()
        self.original.close()
        if self.text:
            sys.stderr.write(self.text)
            sys.stderr.flush()
        return False

    def plugin_messages(self) -> list[str]:
        return [line.strip() for line in self.text.splitlines() if _is_plugin_message(line)]


def _make_logger(trt, verbose: bool):
    class CollectingLogger(trt.ILogger):
        """Keeps errors (the plugin logs its refusals here) and prints warnings when verbose."""

        def __init__(self):
            trt.ILogger.__init__(self)
            self.errors: list[str] = []
            self.warnings: list[str] = []

        def log(self, severity, msg):
            if severity in (trt.ILogger.Severity.INTERNAL_ERROR, trt.ILogger.Severity.ERROR):
                self.errors.append(str(msg))
            elif severity == trt.ILogger.Severity.WARNING:
                self.warnings.append(str(msg))
            if verbose and int(severity) <= int(trt.ILogger.Severity.INFO):
                print(f"[{self_name}] {msg}", flush=True)

    self_name = trt.__name__
    return CollectingLogger()


def _make_progress(trt, enabled: bool, file=None):
    """A tqdm bar per build phase through IProgressMonitor (where the module has it)."""
    if not enabled or not hasattr(trt, "IProgressMonitor"):
        return None
    from tqdm import tqdm

    class TqdmMonitor(trt.IProgressMonitor):
        def __init__(self):
            trt.IProgressMonitor.__init__(self)
            self.bars: dict[str, tqdm] = {}

        def phase_start(self, phase_name, parent_phase, num_steps):
            depth = 0 if parent_phase is None else 1
            if depth == 0:
                self.bars[phase_name] = tqdm(total=num_steps, desc=phase_name, unit="step", leave=False, file=file)

        def step_complete(self, phase_name, step):
            bar = self.bars.get(phase_name)
            if bar is not None:
                bar.update(1)
            return True

        def phase_finish(self, phase_name):
            bar = self.bars.pop(phase_name, None)
            if bar is not None:
                bar.close()

    return TqdmMonitor()


# ---- build ----------------------------------------------------------------------------------------

@dataclass
class BatchRange:
    min: int = 1
    opt: int = 1
    max: int = 1

    @classmethod
    def parse(cls, text: str) -> "BatchRange":
        """"N" means min = opt = max = N; "MIN,OPT,MAX" gives the three (InputError otherwise)."""
        from remamber.validate.numbers import check_batch_range

        return cls(*check_batch_range(text))

    @classmethod
    def arg_type(cls):
        """argparse ``type=`` for --batch: keeps the message (argparse hides a ValueError's)."""
        from remamber.validate.numbers import batch_range_type

        parse = batch_range_type("--batch")
        return lambda text: cls(*parse(text))


@dataclass
class GraphInfo:
    path: Path
    sha256: str
    precision: str  # "fp32" or "fp16" (what the graph's weights/compute are)
    resolution: int
    batch_dim: int | str  # an int for a static batch, else the symbol name
    inputs: list[tuple[str, list]]
    metadata: dict[str, str]
    scan_nodes: int = 0
    external_data: list[str] = field(default_factory=list)  # file names beside the ONNX file
    scan_ops: tuple[str, ...] = ()  # op types of the remamber nodes, in PLUGIN_OPS order


def file_sha256(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def read_graph_info(onnx_path: str | Path, allow_no_scan: bool = False) -> GraphInfo:
    """The graph's facts the build needs, after the checks of remamber.validate.graphs."""
    import onnx

    from remamber.validate.graphs import check_graph

    path = Path(onnx_path)
    model = check_graph(path, allow_no_scan=allow_no_scan)
    meta = {p.key: p.value for p in model.metadata_props}
    inputs = []
    for vi in model.graph.input:
        dims = [d.dim_param if d.HasField("dim_param") else d.dim_value for d in vi.type.tensor_type.shape.dim]
        inputs.append((vi.name, dims))
    image = next((dims for name, dims in inputs if name == "image"), None)
    if image is None or len(image) != 4 or not isinstance(image[2], int) or image[2] <= 0:
        raise InputError(
            f"{path} has no static input 'image' (batch, 3, S, S); it was not written by `remamber-deploy export`"
        )
    precision = meta.get("remamber.precision")
    if precision is None:
        fp16 = any(init.data_type == onnx.TensorProto.FLOAT16 for init in model.graph.initializer)
        precision = "fp16" if fp16 else "fp32"
    scans = sum(1 for n in model.graph.node if n.domain == PLUGIN_NAMESPACE)
    external = sorted({e.value for i in model.graph.initializer if i.data_location == onnx.TensorProto.EXTERNAL
                       for e in i.external_data if e.key == "location"})
    used = {n.op_type for n in model.graph.node if n.domain == PLUGIN_NAMESPACE}
    scan_ops = tuple(op for op in PLUGIN_OPS if op in used)
    return GraphInfo(path, file_sha256(path), precision, int(image[2]), image[0], inputs, meta, scans, external, scan_ops)


def trtexec_command(onnx_path, engine_path, plugin_path, info: GraphInfo, batch: BatchRange, weak_fp16: bool,
                    strongly_typed: bool, workspace_mib: int | None, timing_cache: str | None) -> str:
    def shapes(b):
        return ",".join(f"{name}:" + "x".join(str(b if i == 0 else d) for i, d in enumerate(dims)) for name, dims in info.inputs)

    cmd = ["trtexec", f"--onnx={onnx_path}", f"--saveEngine={engine_path}", f"--dynamicPlugins={plugin_path}"]
    if not isinstance(info.batch_dim, int):
        cmd += [f"--minShapes={shapes(batch.min)}", f"--optShapes={shapes(batch.opt)}", f"--maxShapes={shapes(batch.max)}"]
    if weak_fp16:
        cmd.append("--fp16")
    if strongly_typed:
        cmd.append("--stronglyTyped")
    if workspace_mib:
        cmd.append(f"--memPoolSize=workspace:{workspace_mib}M")
    if timing_cache:
        cmd.append(f"--timingCacheFile={timing_cache}")
    return shlex.join(cmd)


@dataclass
class EngineBuildResult:
    engine_path: str
    sidecar_path: str
    sidecar: dict
    trtexec: str
    seconds: float
    warnings: list[str] = field(default_factory=list)


def sidecar_path_for(engine_path: str | Path) -> Path:
    return Path(str(engine_path) + ".json")


def _parse(flavour: TrtFlavour, network, logger, onnx_path: Path):
    trt = flavour.trt
    parser = trt.OnnxParser(network, logger)
    with StderrCapture() as cap:
        ok = parser.parse_from_file(str(onnx_path))
    if ok:
        return parser
    errors = []
    for i in range(parser.num_errors):
        err = parser.get_error(i)
        where = []
        for attr in ("node_name", "node_operator"):
            fn = getattr(err, attr, None)
            if fn is not None:
                try:
                    v = fn()
                except Exception:
                    v = ""
                if v:
                    where.append(str(v))
        errors.append(f"{err.desc()}" + (f" (node {' / '.join(where)})" if where else ""))
    plugin = [m for m in cap.plugin_messages() + logger.errors if _is_plugin_message(m)]
    others = errors + [m for m in logger.errors if m not in plugin]
    raise EngineBuildError(
        f"{flavour.display_name} could not parse {onnx_path}:\n  - "
        + "\n  - ".join(plugin + others or ["(no message)"])
    )


def _check_outputs(onnx_path: Path, external: list[str], engine_path: Path, timing_cache: Path | None,
                   force: bool) -> None:
    """Before any work: the engine, its sidecar and the timing cache never overwrite an input or a
    file of another kind (remamber.validate.paths)."""
    from remamber.validate.paths import check_output_file

    inputs = [onnx_path, *(onnx_path.parent / f for f in external)]
    check_output_file(engine_path, "engine", "engine (-o)", inputs=inputs + ([timing_cache] if timing_cache else []),
                      force=force)
    check_output_file(sidecar_path_for(engine_path), "json", "engine sidecar", inputs=inputs, force=force)
    if timing_cache is not None:
        check_output_file(timing_cache, "timing-cache", "--timing-cache", inputs=inputs + [engine_path],
                          force=force, also_ok=("unknown",))  # unknown bytes: TensorRT decides (below)


def build_engine(
    onnx_path: str | Path,
    engine_path: str | Path | None = None,
    *,
    precision: str | None = None,
    batch: BatchRange | None = None,
    workspace_mib: int | None = None,
    timing_cache: str | Path | None = None,
    flavour: TrtFlavour | str | None = None,
    progress: bool = True,
    verbose: bool = False,
    force: bool = False,
    allow_no_scan: bool = False,
) -> EngineBuildResult:
    """Parse ``onnx_path`` with the plugin loaded, build, write ``engine_path`` + ``<engine>.json``.

    precision None follows the graph (metadata ``remamber.precision``); "fp16" on an fp32 graph
    means weak fp16 (TensorRT <= 10 only). Before any slow work the graph is validated
    (remamber.validate.graphs; ``allow_no_scan`` accepts a graph without scan nodes) and the outputs are
    checked (remamber.validate.paths): the engine, its sidecar and the timing cache may not be an input,
    and an existing file of another kind is never overwritten unless ``force``.
    """
    onnx_path = Path(onnx_path)
    info = read_graph_info(onnx_path, allow_no_scan=allow_no_scan)
    precision = precision or info.precision
    if precision not in ("fp32", "fp16"):
        raise InputError(f"precision {precision!r} must be fp32 or fp16")
    if info.precision == "fp16" and precision == "fp32":
        raise InputError(f"{onnx_path} is an fp16 graph; build it with --precision fp16 or export an fp32 graph")
    engine_path = Path(engine_path) if engine_path else onnx_path.with_suffix(".engine")
    timing_cache = Path(timing_cache) if timing_cache is not None else None
    _check_outputs(onnx_path, info.external_data, engine_path, timing_cache, force)
    batch = batch or BatchRange()
    if isinstance(info.batch_dim, int) and (batch.min, batch.opt, batch.max) != (info.batch_dim,) * 3:
        raise InputError(f"{onnx_path} has a static batch of {info.batch_dim}; use --batch {info.batch_dim}")
    if workspace_mib is not None and (isinstance(workspace_mib, bool) or not isinstance(workspace_mib, int)
                                      or workspace_mib <= 0):
        raise InputError(f"workspace limit {workspace_mib!r} MiB must be a positive whole number")

    fl = flavour if isinstance(flavour, TrtFlavour) else select_flavour(flavour)
    trt = fl.trt
    strongly_typed = info.precision == "fp16"
    weak_fp16 = precision == "fp16" and info.precision == "fp32"
    if weak_fp16 and not fl.has_weak_fp16:
        raise InputError(
            f"{fl.display_name} has no weakly typed fp16 (BuilderFlag.FP16 is gone in TensorRT 11 / TensorRT-RTX); "
            f"export a strongly typed graph with `remamber-deploy export --precision fp16` and build that"
        )
    if strongly_typed and not fl.has_strongly_typed:
        raise InputError(f"{fl.display_name} has no STRONGLY_TYPED network flag; build the fp32 graph with --precision fp16")
    fl.preflight()
    plugin_path, creator = fl.load_plugin(info.scan_ops or (PLUGIN_NAME,))

    t0 = time.perf_counter()
    logger = _make_logger(trt, verbose)
    builder = trt.Builder(logger)
    flags = 0
    if strongly_typed or (fl.name == "tensorrt_rtx" and fl.has_strongly_typed):
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    if hasattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH"):  # TensorRT 8/9 only
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    _parse(fl, network, logger, onnx_path)

    config = builder.create_builder_config()
    if workspace_mib:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mib * 2**20)
    if weak_fp16:
        config.set_flag(trt.BuilderFlag.FP16)
        # LayerNorm statistics in fp32 (see module docstring)
        config.set_flag(trt.BuilderFlag.PREFER_PRECISION_CONSTRAINTS)
        for i in range(network.num_layers):
            layer = network.get_layer(i)
            if layer.type == trt.LayerType.NORMALIZATION:
                layer.precision = trt.float32
                for j in range(layer.num_outputs):
                    layer.set_output_type(j, trt.float32)
    profile = builder.create_optimization_profile()
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        shape = list(tensor.shape)
        if shape and shape[0] == -1:
            mins, opts, maxs = ([b] + shape[1:] for b in (batch.min, batch.opt, batch.max))
            if any(d == -1 for d in shape[1:]):
                raise InputError(f"input {tensor.name} has dynamic dims beyond batch: {shape}")
            profile.set_shape(tensor.name, mins, opts, maxs)
    if not isinstance(info.batch_dim, int):
        config.add_optimization_profile(profile)
    cache, cache_kept = None, None
    if timing_cache is not None:
        blob = timing_cache.read_bytes() if timing_cache.is_file() else b""
        before = len(logger.warnings) + len(logger.errors)
        cache = config.create_timing_cache(blob)
        unread = bool(blob) and any("timing cache" in m.lower() for m in (logger.warnings + logger.errors)[before:])
        if unread and not force:
            from remamber.validate.paths import KINDS, sniff

            kind = sniff(timing_cache)
            if kind != "timing-cache":
                raise InputError(
                    f"--timing-cache {timing_cache} exists but {fl.display_name} cannot read it as a timing cache "
                    f"(it holds {KINDS[kind]}); refusing to overwrite it: choose another path, delete it, or pass --force"
                )
            # A timing cache this TensorRT cannot use (no GPU here, another TensorRT version): writing
            # back the empty cache TensorRT fell back to would destroy it, so the file stays as it is.
            cache_kept = f"--timing-cache {timing_cache} could not be used by {fl.display_name} and was left unchanged"
        config.set_timing_cache(cache, ignore_mismatch=False)
    with StderrCapture() as cap:
        monitor = _make_progress(trt, progress, file=cap.original)
        if monitor is not None:
            config.progress_monitor = monitor
        serialized = builder.build_serialized_network(network, config)
    seconds = time.perf_counter() - t0
    if serialized is None:
        raise EngineBuildError(
            f"{fl.display_name} could not build an engine from {onnx_path}:\n  - "
            + "\n  - ".join(cap.plugin_messages() + logger.errors or ["(no error message; rerun with --verbose)"])
        )
    data = bytes(memoryview(serialized))
    write_bytes_atomic(engine_path, data)
    if cache is not None and cache_kept is None:
        write_bytes_atomic(timing_cache, bytes(memoryview(config.get_timing_cache().serialize())))
    elif cache_kept:
        import sys

        print(f"warning: {cache_kept}", file=sys.stderr)

    cmd = trtexec_command(onnx_path, engine_path, plugin_path, info, batch, weak_fp16, strongly_typed and fl.name == "tensorrt",
                          workspace_mib, str(timing_cache) if timing_cache else None)
    sidecar = {
        "engine": str(engine_path),
        "engine_bytes": len(data),
        "tensorrt_flavour": fl.name,
        "tensorrt_version": fl.version,
        "plugin": {"name": ", ".join(f"{PLUGIN_NAMESPACE}::{op}" for op in info.scan_ops),
                   "version": str(creator.plugin_version),
                   "library": str(plugin_path), "library_sha256": file_sha256(Path(plugin_path))}
                  if info.scan_nodes else None,
        "scan_nodes": info.scan_nodes,
        "precision": precision,
        "graph_precision": info.precision,
        "strongly_typed": bool(flags & (1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))) if fl.has_strongly_typed else False,
        "resolution": info.resolution,
        "batch": asdict(batch) if not isinstance(info.batch_dim, int) else {"min": info.batch_dim, "opt": info.batch_dim, "max": info.batch_dim},
        "workspace_mib": workspace_mib,
        "timing_cache": str(timing_cache) if timing_cache else None,
        "onnx": str(onnx_path),
        "onnx_sha256": info.sha256,
        "onnx_metadata": info.metadata,
        "build_seconds": round(seconds, 3),
        "built_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "host": {"hostname": socket.gethostname(), "platform": platform.platform(), "machine": platform.machine(),
                 "python": platform.python_version()},
        "trtexec": cmd,
    }
    side = sidecar_path_for(engine_path)
    write_text_atomic(side, json.dumps(sidecar, indent=2) + "\n")
    return EngineBuildResult(str(engine_path), str(side), sidecar, cmd, seconds, list(logger.warnings))


def check_engine_sidecar(engine_path: str | Path, flavour: TrtFlavour | str | None = None) -> dict:
    """Before deserializing an engine: its sidecar must exist and name plugin version 1, the same
    TensorRT flavour/version as the one loaded now, and the loaded plugin must be version 1."""
    engine_path = Path(engine_path)
    side = sidecar_path_for(engine_path)
    if not side.is_file():
        raise InputError(f"{side} (the engine's sidecar) is missing; rebuild with `remamber-deploy build-engine`")
    try:
        meta = json.loads(side.read_text(encoding="utf-8"))
        if not isinstance(meta, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as exc:
        raise InputError(f"engine sidecar {side} is unreadable ({exc}); rebuild the engine with "
                         "`remamber-deploy build-engine`") from None
    fl = flavour if isinstance(flavour, TrtFlavour) else select_flavour(flavour or meta.get("tensorrt_flavour"))
    plugin = meta.get("plugin")
    recorded = str(plugin.get("version")) if isinstance(plugin, dict) else None
    if plugin is not None and recorded != PLUGIN_VERSION:
        raise PluginVersionError(
            f"{engine_path} was built with {PLUGIN_NAMESPACE}::{PLUGIN_NAME} plugin version {recorded!r}, this "
            f"project provides version {PLUGIN_VERSION!r}; rebuild the engine with `remamber-deploy build-engine`"
        )
    if meta.get("tensorrt_flavour") != fl.name or meta.get("tensorrt_version") != fl.version:
        raise PluginVersionError(
            f"{engine_path} was built by {meta.get('tensorrt_flavour')} {meta.get('tensorrt_version')} but "
            f"{fl.display_name} is loaded; engines are not portable across versions: rebuild it"
        )
    if plugin is not None:
        named = [n.strip().split("::")[-1] for n in str(plugin.get("name") or "").split(",") if n.strip()]
        fl.load_plugin(tuple(op for op in PLUGIN_OPS if op in named) or (PLUGIN_NAME,))
    return meta
