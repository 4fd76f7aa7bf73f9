"""``remamber-deploy triton-repo``: a Triton Inference Server model repository for a server fleet.

The repository holds one ensemble, ``remamber`` (what clients call: ``image`` BYTES + ``text`` BYTES in,
``logits`` + ``probability`` out, as ``remamber-deploy serve``), made of three models:

* ``remamber_preprocess`` (Python backend): decode, check, resize + normalise, tokenise
  (serve/triton_models/preprocess.py, which calls ``remamber.serve.pipeline``);
* ``remamber_onnx`` (``onnxruntime_onnx``, our custom-op library loaded with
  ``model_operations { op_library_filename }``) or ``remamber_trt`` (``tensorrt_plan``; the plugin
  library is loaded by the server: ``LD_PRELOAD`` or ``--backend-config=tensorrt,plugins=...``);
* ``remamber_postprocess`` (Python backend): the probability map at the image's size.

Each model has dynamic batching, instance groups and a version policy. Every ``config.pbtxt`` is built
as a ``ModelConfig`` protobuf (tritonclient's model_config_pb2), written as text, then parsed back from
the file: a field Triton does not know is an error here, not at server start. The native library is
copied into ``lib/`` and referenced by the path the repository will have inside the server
(``--mount-path``, /models by default, as in the Triton container commands of the README).
The repository is written to a temporary folder and renamed into place when complete.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

from remamber.errors import InputError, RemamberError

from . import pipeline

ENSEMBLE = "remamber"
PREPROCESS = "remamber_preprocess"
POSTPROCESS = "remamber_postprocess"
INFER_MODELS = {"onnxruntime": "remamber_onnx", "tensorrt": "remamber_trt"}
PLATFORMS = {"onnxruntime": "onnxruntime_onnx", "tensorrt": "tensorrt_plan"}
MODEL_FILES = {"onnxruntime": "model.onnx", "tensorrt": "model.plan"}
NATIVE_KIND = {"onnxruntime": "ort", "tensorrt": "trt"}
TRITON_MODELS = Path(__file__).with_name("triton_models")
NUM_TOKENS = 20


class ModelConfigError(InputError):
    """A config.pbtxt that Triton's ModelConfig schema does not accept."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.ArgumentDefaultsHelpFormatter
    parser.add_argument("--out", type=Path, required=True, help="repository folder to write")
    parser.add_argument("--force", action="store_true", help="replace --out if it exists")
    parser.add_argument("--platform", default="onnxruntime", choices=list(PLATFORMS),
                        help="inference model: onnxruntime_onnx (custom-op library) or tensorrt_plan (plugin)")
    src = parser.add_argument_group("model (an exported ONNX file, or a model to export)")
    src.add_argument("--onnx", type=Path, help="a `remamber-deploy export` file (default: export one now)")
    src.add_argument("--engine", type=Path, help="tensorrt: a prebuilt engine (built with the server's TensorRT)")
    src.add_argument("--variant", default="conv", choices=["conv", "mamba"])
    src.add_argument("--preset", default="tiny", choices=["base", "tiny"])
    src.add_argument("--checkpoint", type=Path, help="ReMamber checkpoint (.pth); default: seeded random weights")
    src.add_argument("--seed", type=int, default=0)
    src.add_argument("--resolution", type=int, help="network input side (default 480, or the --onnx file's)")
    src.add_argument("--precision", default="fp32", choices=["fp32", "fp16"])
    sched = parser.add_argument_group("scheduling")
    sched.add_argument("--max-batch-size", type=int, default=8)
    sched.add_argument("--max-queue-delay-us", type=int, default=5000)
    sched.add_argument("--instances", type=int, default=1, help="inference-model instances (per GPU with --kind gpu)")
    sched.add_argument("--kind", choices=["auto", "cpu", "gpu"], default="auto",
                       help="inference-model instances on CPU or GPU (auto: gpu for tensorrt, cpu for onnxruntime)")
    sched.add_argument("--gpus", help="comma-separated GPU ids for --kind gpu (default: all)")
    sched.add_argument("--python-instances", type=int, default=2, help="instances of each Python-backend model")
    sched.add_argument("--versions", type=int, default=1, help="version policy: serve the latest N versions")
    where = parser.add_argument_group("server side")
    where.add_argument("--mount-path", default="/models", help="where the repository is mounted in the server")
    where.add_argument("--tokenizer-path", help="CLIP tokenizer folder inside the server (default: open_clip_torch's)")
    where.add_argument("--max-image-bytes", type=int, default=pipeline.Limits.max_image_bytes)
    where.add_argument("--max-image-pixels", type=int, default=pipeline.Limits.max_image_pixels)


# ------------------------------------------------------------------------------------ configs

def _tensor(name: str, data_type: str, dims: list[int]) -> dict:
    return {"name": name, "data_type": data_type, "dims": [str(d) for d in dims]}


def _params(values: dict) -> dict:
    return {k: {"string_value": str(v)} for k, v in values.items() if v is not None}


def _scheduling(args) -> dict:
    return {
        "max_batch_size": args.max_batch_size,
        "dynamic_batching": {"max_queue_delay_microseconds": str(args.max_queue_delay_us)},
        "version_policy": {"latest": {"num_versions": args.versions}},
    }


def preprocess_config(args, resolution: int) -> dict:
    return {
        "name": PREPROCESS, "backend": "python", **_scheduling(args),
        "input": [_tensor(pipeline.IMAGE, "TYPE_STRING", [1]), _tensor(pipeline.TEXT, "TYPE_STRING", [1])],
        "output": [_tensor("pixels", "TYPE_FP32", [3, resolution, resolution]),
                   _tensor("input_ids", "TYPE_INT64", [NUM_TOKENS]),
                   _tensor("attention_mask", "TYPE_INT64", [NUM_TOKENS]),
                   _tensor("image_size", "TYPE_INT64", [2])],
        "instance_group": [{"count": args.python_instances, "kind": "KIND_CPU"}],
        "parameters": _params({"resolution": resolution, "max_image_bytes": args.max_image_bytes,
                               "max_image_pixels": args.max_image_pixels, "tokenizer_path": args.tokenizer_path}),
    }


def postprocess_config(args, resolution: int) -> dict:
    return {
        "name": POSTPROCESS, "backend": "python", **_scheduling(args),
        "input": [_tensor(pipeline.LOGITS, "TYPE_FP32", [1, resolution, resolution]),
                  _tensor("image_size", "TYPE_INT64", [2])],
        "output": [_tensor(pipeline.PROBABILITY, "TYPE_FP32", [-1, -1])],
        "instance_group": [{"count": args.python_instances, "kind": "KIND_CPU"}],
    }


def infer_config(args, resolution: int, library_in_server: str) -> dict:
    kind = args.kind if args.kind != "auto" else ("gpu" if args.platform == "tensorrt" else "cpu")
    group = {"count": args.instances, "kind": "KIND_GPU" if kind == "gpu" else "KIND_CPU"}
    if kind == "gpu" and args.gpus:
        group["gpus"] = [int(g) for g in args.gpus.split(",")]
    config = {
        "name": INFER_MODELS[args.platform], "platform": PLATFORMS[args.platform], **_scheduling(args),
        "input": [_tensor("image", "TYPE_FP32", [3, resolution, resolution]),
                  _tensor("input_ids", "TYPE_INT64", [NUM_TOKENS]),
                  _tensor("attention_mask", "TYPE_INT64", [NUM_TOKENS])],
        "output": [_tensor(pipeline.LOGITS, "TYPE_FP32", [1, resolution, resolution])],
        "instance_group": [group],
    }
    if args.platform == "onnxruntime":
        # ONNX Runtime backend: custom-op libraries registered per model (Triton's documented way).
        config["model_operations"] = {"op_library_filename": [library_in_server]}
    return config


def ensemble_config(args, resolution: int) -> dict:
    infer = INFER_MODELS[args.platform]
    return {
        "name": ENSEMBLE, "platform": "ensemble", "max_batch_size": args.max_batch_size,
        "input": [_tensor(pipeline.IMAGE, "TYPE_STRING", [1]), _tensor(pipeline.TEXT, "TYPE_STRING", [1])],
        "output": [_tensor(pipeline.LOGITS, "TYPE_FP32", [1, resolution, resolution]),
                   _tensor(pipeline.PROBABILITY, "TYPE_FP32", [-1, -1])],
        "ensemble_scheduling": {"step": [
            {"model_name": PREPROCESS, "model_version": "-1",
             "input_map": {pipeline.IMAGE: pipeline.IMAGE, pipeline.TEXT: pipeline.TEXT},
             "output_map": {"pixels": "pixels", "input_ids": "input_ids", "attention_mask": "attention_mask",
                            "image_size": "image_size"}},
            {"model_name": infer, "model_version": "-1",
             "input_map": {"image": "pixels", "input_ids": "input_ids", "attention_mask": "attention_mask"},
             "output_map": {pipeline.LOGITS: pipeline.LOGITS}},
            {"model_name": POSTPROCESS, "model_version": "-1",
             "input_map": {pipeline.LOGITS: pipeline.LOGITS, "image_size": "image_size"},
             "output_map": {pipeline.PROBABILITY: pipeline.PROBABILITY}},
        ]},
    }


def config_text(config: dict) -> str:
    """config.pbtxt text of a ModelConfig given as a dict (json_format names)."""
    from google.protobuf import json_format, text_format
    from tritonclient.grpc import model_config_pb2

    try:
        message = json_format.ParseDict(config, model_config_pb2.ModelConfig())
    except json_format.ParseError as exc:
        raise ModelConfigError(f"model config {config.get('name')!r} is not a valid ModelConfig: {exc}") from None
    return text_format.MessageToString(message)


def parse_config(path: Path):
    """Parse a config.pbtxt into tritonclient's ModelConfig, or raise ModelConfigError naming the file."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    try:
        return text_format.Parse(Path(path).read_text(encoding="utf-8"), model_config_pb2.ModelConfig())
    except (text_format.ParseError, OSError, UnicodeDecodeError) as exc:
        raise ModelConfigError(f"{path} is not a valid Triton ModelConfig: {exc}; fix or regenerate it") from None


def check_repository(root: Path) -> dict:
    """Parse every config.pbtxt under ``root`` and check that the ensemble's steps fit their models.

    Returns {model name: ModelConfig}. A step must name a model of the repository and map only tensors
    that model declares; each model's name must match its folder (Triton requires it).
    """
    configs = {}
    for path in sorted(Path(root).glob("*/config.pbtxt")):
        config = parse_config(path)
        if config.name != path.parent.name:
            raise ModelConfigError(f"{path}: name {config.name!r} differs from its folder {path.parent.name!r}")
        configs[config.name] = config
    for name, config in configs.items():
        for step in config.ensemble_scheduling.step:
            target = configs.get(step.model_name)
            if target is None:
                raise ModelConfigError(f"ensemble {name!r} calls {step.model_name!r}, which is not in {root}")
            declared_in = {t.name for t in target.input}
            declared_out = {t.name for t in target.output}
            for key in step.input_map:
                if key not in declared_in:
                    raise ModelConfigError(f"ensemble {name!r} feeds {step.model_name!r} an undeclared input {key!r}")
            for key in step.output_map:
                if key not in declared_out:
                    raise ModelConfigError(f"ensemble {name!r} reads {step.model_name!r}'s undeclared output {key!r}")
    return configs


# -------------------------------------------------------------------------------------- writing

def _check_args(args) -> None:
    from remamber.imageio import check_size

    for name in ("max_batch_size", "instances", "python_instances", "versions", "max_image_bytes", "max_image_pixels"):
        if getattr(args, name) < 1:
            raise InputError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    if args.max_queue_delay_us < 0:
        raise InputError(f"--max-queue-delay-us must be >= 0, got {args.max_queue_delay_us}")
    if args.resolution is not None:
        check_size(args.resolution)
    if args.gpus and not all(g.strip().isdigit() for g in args.gpus.split(",")):
        raise InputError(f"--gpus {args.gpus!r}: give comma-separated GPU ids such as 0,1")
    for option in ("onnx", "engine", "checkpoint"):
        value = getattr(args, option)
        if value is not None and not value.is_file():
            raise InputError(f"--{option} {value} does not exist or is not a file; check the path")
    if args.engine is not None and args.platform != "tensorrt":
        raise InputError("--engine is for --platform tensorrt")
    if args.out.exists() and not args.force:
        raise InputError(f"--out {args.out} exists; pass --force to replace it, or choose another folder")
    if not args.mount_path.startswith("/"):
        raise InputError(f"--mount-path {args.mount_path!r} must be an absolute path inside the server")


def _onnx_file(args, workdir: Path, say) -> tuple[Path, int]:
    from remamber.export.engine_builder import read_graph_info

    if args.onnx is not None:
        info = read_graph_info(args.onnx)
        if args.resolution is not None and args.resolution != info.resolution:
            raise InputError(f"--resolution {args.resolution} does not match {args.onnx} (exported at {info.resolution})")
        if info.external_data:
            raise InputError(f"{args.onnx} keeps its weights in external files; export it as a single file for Triton")
        if isinstance(info.batch_dim, int):
            raise InputError(f"{args.onnx} has a static batch {info.batch_dim}; export with a dynamic batch for Triton's batcher")
        return args.onnx, info.resolution
    from remamber.export.model_source import load_model
    from remamber.export.onnx_export import export_onnx

    resolution = args.resolution or 480
    say(f"building the {args.variant}/{args.preset} model and exporting ONNX at {resolution} ({args.precision})")
    model, _ = load_model(args.variant, args.preset, args.seed, args.checkpoint)
    path = workdir / "model.onnx"
    export_onnx(model, path, resolution, precision=args.precision, progress=False)
    return path, resolution


def _engine_file(args, onnx_path: Path, workdir: Path, say) -> Path:
    from remamber import native
    from remamber.errors import NativeLibraryError
    from remamber.export import engine_builder

    if args.engine is not None:
        return args.engine
    batch = engine_builder.BatchRange(1, max(1, args.max_batch_size // 2), args.max_batch_size)
    try:
        flavour = engine_builder.select_flavour("tensorrt")
    except NativeLibraryError:
        info = engine_builder.read_graph_info(onnx_path)
        command = engine_builder.trtexec_command(
            "model.onnx", "model.plan", f"{args.mount_path}/lib/{native.library_path('trt').name}", info, batch,
            weak_fp16=args.precision == "fp16", strongly_typed=False, workspace_mib=None, timing_cache=None)
        raise RemamberError(
            "--platform tensorrt needs an engine built by the TensorRT of the Triton server (full TensorRT is not "
            "importable here; TensorRT-RTX engines do not load in Triton's TensorRT backend). Build it inside the "
            f"server's container from the exported ONNX, then pass --engine model.plan:\n  {command}"
        ) from None
    engine = workdir / "model.plan"
    say(f"building the engine with {flavour.display_name} (batch {batch.min}..{batch.max})")
    engine_builder.build_engine(onnx_path, engine, precision=args.precision, batch=batch, flavour=flavour, progress=False)
    return engine


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def write_repository(args, say=lambda message: None) -> dict:
    from remamber import native

    _check_args(args)
    library = native.library_path(NATIVE_KIND[args.platform])
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmpdir", dir=out.parent))
    try:
        work = staging / ".work"
        work.mkdir()
        onnx_path, resolution = _onnx_file(args, work, say)
        model_file = onnx_path if args.platform == "onnxruntime" else _engine_file(args, onnx_path, work, say)
        repo = staging / "repo"
        library_in_server = f"{args.mount_path.rstrip('/')}/lib/{library.name}"
        configs = {
            PREPROCESS: preprocess_config(args, resolution),
            INFER_MODELS[args.platform]: infer_config(args, resolution, library_in_server),
            POSTPROCESS: postprocess_config(args, resolution),
            ENSEMBLE: ensemble_config(args, resolution),
        }
        for name, config in configs.items():
            _write(repo / name / "config.pbtxt", config_text(config))
        (repo / ENSEMBLE / "1").mkdir()  # Triton wants a version folder for the ensemble too
        for name, source in ((PREPROCESS, "preprocess.py"), (POSTPROCESS, "postprocess.py")):
            (repo / name / "1").mkdir()
            shutil.copyfile(TRITON_MODELS / source, repo / name / "1" / "model.py")
        (repo / INFER_MODELS[args.platform] / "1").mkdir()
        shutil.copyfile(model_file, repo / INFER_MODELS[args.platform] / "1" / MODEL_FILES[args.platform])
        (repo / "lib").mkdir()
        shutil.copyfile(library, repo / "lib" / library.name)
        check_repository(repo)  # parse back every file that was written
        manifest = {
            "ensemble": ENSEMBLE, "models": list(configs), "platform": PLATFORMS[args.platform],
            "resolution": resolution, "precision": args.precision, "max_batch_size": args.max_batch_size,
            "mount_path": args.mount_path, "library": f"lib/{library.name}",
            "launch": launch_command(args, library.name),
        }
        _write(repo / "repository.json", json.dumps(manifest, indent=2) + "\n")
        if out.exists():
            shutil.rmtree(out)
        repo.rename(out)
        return manifest
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def launch_command(args, library_name: str) -> str:
    """How to start tritonserver on this repository (in the Triton container, repository at --mount-path)."""
    mount = args.mount_path.rstrip("/")
    if args.platform == "tensorrt":
        # The TensorRT backend loads plugin libraries given to it; LD_PRELOAD=<lib> tritonserver ... works too.
        return (f"tritonserver --model-repository={mount} "
                f"--backend-config=tensorrt,plugins={mount}/lib/{library_name}")
    return f"tritonserver --model-repository={mount}"


def run(args) -> int:
    say = lambda message: print(f"triton-repo: {message}", file=sys.stderr, flush=True)  # noqa: E731
    manifest = write_repository(args, say)
    print(f"wrote {args.out}: ensemble {manifest['ensemble']!r} over {', '.join(manifest['models'][:-1])}")
    print(f"every config.pbtxt parsed as tritonclient ModelConfig; start the server with:\n  {manifest['launch']}")
    return 0
