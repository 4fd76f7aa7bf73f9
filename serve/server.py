"""``remamber-deploy serve``: ReMamber behind a Triton Inference Server, through PyTriton.

A request carries an image (``image``: the encoded file as BYTES, or ``image_array``: HxWx3 UINT8) and
a sentence (``text``: BYTES). The server decodes, tokenises and preprocesses it (serve/pipeline.py),
runs one batch through the chosen runtime (``bench.runtimes``: torch, ort with our custom-op library,
or trt with our plugin), and answers ``logits`` (1,S,S) and ``probability`` (H,W, the image's size;
``predict``'s mask is ``probability > 0.5``). Triton does the rest: dynamic batching (max batch size,
queue delay), HTTP/gRPC, ``/v2/health/ready``, Prometheus metrics and per-model statistics.

Binds 127.0.0.1 unless ``--host`` says otherwise; ports default to free ones chosen by the OS and are
printed (and written to ``--ready-file``) once the model is ready. SIGINT and SIGTERM stop the server
and remove its workspace.

One PyTriton limit: a batch formed by Triton is one call of the inference function, and PyTriton
reports an error per call, not per request, so a malformed request fails the requests batched with it
(the message names the bad request's position). Triton's own shape/dtype checks reject a request
before batching, so only content errors (undecodable image, empty text) can do this.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from remamber.errors import InputError, RemamberError

from . import environment, pipeline

MODEL_NAME = "remamber"
RUNTIME_NAMES = ("torch", "ort", "trt")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.ArgumentDefaultsHelpFormatter
    model = parser.add_argument_group("model")
    model.add_argument("--variant", default="conv", choices=["conv", "mamba"], help="conv = paper, mamba = released")
    model.add_argument("--preset", default="tiny", choices=["base", "tiny"], help="model size (checkpoints need base)")
    model.add_argument("--checkpoint", type=Path, help="ReMamber checkpoint (.pth); default: seeded random weights")
    model.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    model.add_argument("--runtime", default="ort", choices=RUNTIME_NAMES, help="inference runtime")
    model.add_argument("--precision", default="fp32", choices=["fp32", "fp16"])
    model.add_argument("--resolution", type=int, help="network input side, a multiple of 32 (default 480, or the --onnx file's)")
    model.add_argument("--onnx", type=Path, help="serve this `remamber-deploy export` file instead of exporting (ort, trt)")
    model.add_argument("--threads", type=int, help="CPU threads of PyTorch / ONNX Runtime (default: theirs)")
    model.add_argument("--tokenizer", type=Path, help="local CLIP tokenizer folder (default: $REMAMBER_TOKENIZER_PATH, else open_clip_torch's)")
    batching = parser.add_argument_group("batching (Triton's dynamic batcher)")
    batching.add_argument("--max-batch-size", type=int, default=8, help="largest batch Triton forms")
    batching.add_argument("--max-queue-delay-us", type=int, default=5000,
                          help="how long Triton holds a request to fill a batch (microseconds)")
    net = parser.add_argument_group("network")
    net.add_argument("--host", default=environment.LOOPBACK, help="address HTTP, gRPC and metrics bind to")
    net.add_argument("--http-port", type=int, default=0, help="0: a free port")
    net.add_argument("--grpc-port", type=int, default=0, help="0: a free port")
    net.add_argument("--metrics-port", type=int, default=0, help="0: a free port")
    net.add_argument("--model-name", default=MODEL_NAME)
    limits = parser.add_argument_group("request limits")
    limits.add_argument("--max-image-bytes", type=int, default=pipeline.Limits.max_image_bytes)
    limits.add_argument("--max-image-pixels", type=int, default=pipeline.Limits.max_image_pixels)
    parser.add_argument("--ready-file", type=Path, help="write the endpoints as JSON here once the model is ready")
    parser.add_argument("--verbose", action="store_true", help="show Triton's own log")


def _check_args(args) -> None:
    from remamber.imageio import check_size

    for name in ("max_batch_size", "max_image_bytes", "max_image_pixels", "threads"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise InputError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    if args.max_queue_delay_us < 0:
        raise InputError(f"--max-queue-delay-us must be >= 0, got {args.max_queue_delay_us}")
    for name in ("http_port", "grpc_port", "metrics_port"):
        value = getattr(args, name)
        if not 0 <= value <= 65535:
            raise InputError(f"--{name.replace('_', '-')} {value} is not a TCP port (0..65535; 0 picks a free one)")
    if args.resolution is not None:
        check_size(args.resolution)
    if args.checkpoint is not None and not args.checkpoint.is_file():
        raise InputError(f"--checkpoint {args.checkpoint} does not exist or is not a file; check the path")
    if args.onnx is not None:
        if args.runtime == "torch":
            raise InputError("--onnx is for the ort and trt runtimes; the torch runtime serves the PyTorch model")
        if not args.onnx.is_file():
            raise InputError(f"--onnx {args.onnx} does not exist; create it with `remamber-deploy export`")


def onnx_resolution(path: Path) -> int:
    """The square input side S of an exported graph (its ``image`` input is (batch, 3, S, S))."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    for inp in model.graph.input:
        if inp.name == "image":
            dims = [d.dim_value for d in inp.type.tensor_type.shape.dim]
            if len(dims) == 4 and dims[2] == dims[3] and dims[2] > 0:
                return int(dims[2])
    raise InputError(f"{path} has no square 'image' input (batch, 3, S, S); give a file written by `remamber-deploy export`")


class Engine:
    """One runtime at one resolution, fed with batches of decoded requests.

    ``fixed_batch`` (TensorRT engines are built for one batch size here): batches are padded to it
    with copies of their first row and the padding is dropped from the answer.
    """

    def __init__(self, runtime, resolution: int, tokenizer=None, fixed_batch: int | None = None):
        self.runtime = runtime
        self.resolution = resolution
        self.tokenizer = tokenizer
        self.fixed_batch = fixed_batch

    def logits(self, images: list, texts: list[str]) -> np.ndarray:
        feeds = pipeline.preprocess(images, texts, self.resolution, self.tokenizer)
        count = len(images)
        if self.fixed_batch and count < self.fixed_batch:
            pad = self.fixed_batch - count
            feeds = {k: np.concatenate([v, np.repeat(v[:1], pad, axis=0)]) for k, v in feeds.items()}
        return np.asarray(self.runtime.infer(feeds), dtype=np.float32)[:count]

    def answer(self, requests: list[dict], limits: pipeline.Limits) -> list[dict[str, np.ndarray]]:
        """Responses for requests {name: array with a leading batch dim of 1}, in order."""
        images, texts, problems = [], [], []
        for position, request in enumerate(requests):
            try:
                fields = {k: (v[0] if v is not None and len(v) == 1 else v) for k, v in request.items()}
                images.append(pipeline.request_image(fields, limits))
                texts.append(pipeline.decode_text(fields.get(pipeline.TEXT)))
            except InputError as exc:
                problems.append(f"request {position + 1} of {len(requests)} in this batch: {exc}")
        if problems:
            raise InputError("; ".join(problems))
        logits = self.logits(images, texts)
        answers = []
        for image, row in zip(images, logits):
            answers.append({
                pipeline.LOGITS: row[None, ...] if row.ndim == 3 else row[None, None, ...],
                pipeline.PROBABILITY: pipeline.probability_map(row, image.height, image.width)[None, ...],
            })
        return answers


def build_engine(args, stage=lambda message: None) -> tuple[Engine, dict]:
    """The runtime the arguments ask for, ready to infer; the second value describes it."""
    from remamber.bench.runtimes import RUNTIMES, BenchContext, Skip

    resolution = args.resolution
    if args.onnx is not None:
        found = onnx_resolution(args.onnx)
        if resolution is not None and resolution != found:
            raise InputError(f"--resolution {resolution} does not match {args.onnx} (exported at {found}); drop one")
        resolution = found
    resolution = resolution or 480
    model = None
    if args.onnx is None:
        from remamber.export.model_source import load_model

        stage(f"building the {args.variant}/{args.preset} model")
        model, _ = load_model(args.variant, args.preset, args.seed, args.checkpoint)
    workdir = Path(tempfile.mkdtemp(prefix="remamber-serve-model-"))
    batch = args.max_batch_size if args.runtime == "trt" else 1
    ctx = BenchContext(model=model, precision=args.precision, threads=args.threads, batch=batch,
                       workdir=workdir, stage=stage)
    if args.onnx is not None:
        ctx._onnx[resolution] = (args.onnx, 0.0)  # the shared per-resolution export, given instead of made
    stage(f"preparing the {args.runtime} runtime at {resolution}")
    try:
        runtime = RUNTIMES[args.runtime](ctx, resolution)
    except Skip as skip:
        shutil.rmtree(workdir, ignore_errors=True)
        raise RemamberError(f"the {args.runtime} runtime cannot serve on this machine: {skip.reason}") from None
    info = {"runtime": args.runtime, "resolution": resolution, "precision": args.precision,
            "device": runtime.device, "details": runtime.details, "workdir": str(workdir)}
    engine = Engine(runtime, resolution, args.tokenizer, fixed_batch=batch if args.runtime == "trt" else None)
    engine.workdir = workdir
    return engine, info


def tensors():
    """PyTriton input and output declarations (shapes without the batch dimension)."""
    from pytriton.model_config import Tensor

    inputs = [
        Tensor(name=pipeline.IMAGE, dtype=bytes, shape=(1,), optional=True),
        Tensor(name=pipeline.IMAGE_ARRAY, dtype=np.uint8, shape=(-1, -1, 3), optional=True),
        Tensor(name=pipeline.TEXT, dtype=bytes, shape=(1,)),
    ]
    outputs = [
        Tensor(name=pipeline.LOGITS, dtype=np.float32, shape=(1, -1, -1)),
        Tensor(name=pipeline.PROBABILITY, dtype=np.float32, shape=(-1, -1)),
    ]
    return inputs, outputs


def run(args) -> int:
    _check_args(args)
    environment.require_pytriton()
    say = lambda message: print(f"serve: {message}", file=sys.stderr, flush=True)  # noqa: E731
    stop = threading.Event()

    def on_signal(signum, _frame):
        say(f"{signal.Signals(signum).name} received, stopping")
        stop.set()

    engine = None
    previous = {}
    workspace_root = Path(tempfile.mkdtemp(prefix="remamber-serve-"))
    try:
        # Until the server runs, Ctrl-C / SIGTERM interrupt the export or engine build as in every command;
        # from then on they ask the serving loop to stop the server and clean up.
        engine, info = build_engine(args, say)
        previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        with Server(engine, args, workspace_root / "pytriton", say) as server:
            ready = {**server.endpoints(), **{k: info[k] for k in ("runtime", "resolution", "precision", "device")},
                     "max_batch_size": args.max_batch_size, "max_queue_delay_us": args.max_queue_delay_us,
                     "workspace": str(workspace_root)}
            if args.ready_file is not None:
                from remamber.atomic import write_text_atomic

                write_text_atomic(args.ready_file, json.dumps(ready, indent=2) + "\n")
            print(json.dumps({"ready": ready}), flush=True)
            while not stop.wait(0.5):
                if not server.alive():
                    say("Triton Inference Server exited; stopping")
                    return 1
        say("stopped")
        return 0
    finally:
        if engine is not None:
            engine.runtime.close()
            shutil.rmtree(engine.workdir, ignore_errors=True)
        shutil.rmtree(workspace_root, ignore_errors=True)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class Server:
    """A PyTriton Triton server bound to an Engine; a context manager that stops and cleans up."""

    def __init__(self, engine: Engine, args, workspace: Path, say=lambda message: None):
        self.engine = engine
        self.args = args
        self.workspace = workspace
        self.say = say
        self.host = args.host
        self.ports = {name: getattr(args, f"{name}_port") or environment.free_port(args.host if args.host != "0.0.0.0" else environment.LOOPBACK)
                      for name in ("http", "grpc", "metrics")}
        self.triton = None

    def endpoints(self) -> dict:
        host = self.host if self.host != "0.0.0.0" else environment.LOOPBACK
        return {"model": self.args.model_name, "http": f"{host}:{self.ports['http']}",
                "grpc": f"{host}:{self.ports['grpc']}", "metrics": f"http://{host}:{self.ports['metrics']}/metrics"}

    def __enter__(self):
        from pytriton.model_config import DynamicBatcher, ModelConfig
        from pytriton.triton import DEFAULT_PROTECTED_ENDPOINTS, Triton, TritonConfig, TritonSecurityConfig

        applied = environment.prepare_server_environment()
        self.say(f"Python backend environment: {applied['python_backend_env']}")
        config = TritonConfig(
            http_address=self.host, http_port=self.ports["http"],
            grpc_address=self.host, grpc_port=self.ports["grpc"],
            metrics_address=self.host, metrics_port=self.ports["metrics"],
            allow_metrics=True, allow_cpu_metrics=True, allow_gpu_metrics=False,
            exit_timeout_secs=10, log_verbose=1 if self.args.verbose else 0,
        )
        limits = pipeline.Limits(self.args.max_image_bytes, self.args.max_image_pixels)

        def infer(requests):
            return self.engine.answer([dict(r.data) for r in requests], limits)

        inputs, outputs = tensors()
        t0 = time.perf_counter()
        # PyTriton guards Triton's management APIs with a random token; the read-only per-model statistics
        # stay open (batch sizes formed, queue and compute times: what serve-bench and perf_analyzer read).
        security = TritonSecurityConfig(
            restricted_endpoints=[e for e in DEFAULT_PROTECTED_ENDPOINTS if e != "statistics"])
        self.triton = Triton(config=config, workspace=self.workspace, security_config=security)
        self.triton.__enter__()
        try:
            self.triton.bind(
                model_name=self.args.model_name, infer_func=infer, inputs=inputs, outputs=outputs,
                config=ModelConfig(
                    max_batch_size=self.args.max_batch_size,
                    batcher=DynamicBatcher(max_queue_delay_microseconds=self.args.max_queue_delay_us),
                ),
                strict=True,
            )
            self.say(f"starting Triton Inference Server on {self.host}")
            self.triton.run()
            self.say(f"model {self.args.model_name!r} ready in {time.perf_counter() - t0:.1f} s")
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def alive(self) -> bool:
        return bool(self.triton is not None and self.triton.is_alive())

    def __exit__(self, *exc):
        if self.triton is not None:
            self.triton.stop()
            self.triton = None
        shutil.rmtree(self.workspace, ignore_errors=True)
        return False
