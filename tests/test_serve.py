"""`remamber-deploy serve` against a real Triton Inference Server (PyTriton) on 127.0.0.1, plus
`triton-repo` (configs parsed as Triton ModelConfig, its Python-backend models run in-process) and the
`serve-bench` load loop.

One ONNX export (tiny preset, 64x64) and ONE server per module (ORT runtime). The expected answers are
computed here, independently of the server's code: the same functions `predict` uses (imageio.preprocess,
tokenizer.tokenize, the PyTorch model with the reference scan via bench.runtimes.reference_logits, and
imageio.postprocess for the mask), compared with remamber.parity at the fp32 parity bound of `bench`.
Request counts and waits are bounded; the server is stopped with SIGTERM by the last test.
"""

from __future__ import annotations

import importlib.util
import io
import json
import signal
import socket
import sys
import threading
import types
import urllib.request
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pytriton", reason="nvidia-pytriton is installed by scripts/setup.sh (extra `serve`)")
pytest.importorskip("tritonclient.grpc", reason="tritonclient is installed by scripts/setup.sh (extra `serve`)")

import torch  # noqa: E402
from PIL import Image  # noqa: E402

from remamber import imageio, tokenizer  # noqa: E402
from remamber.bench.baseline import PARITY_TOLERANCE  # noqa: E402
from remamber.errors import InputError, RemamberError  # noqa: E402
from remamber.parity import compare_logits  # noqa: E402
from remamber.serve import client as serve_client  # noqa: E402

RES = 64
MAX_PIXELS = 150 * 150  # the server's --max-image-pixels: the "oversized" request is just above it
QUEUE_DELAY_US = 100_000  # long enough that 4 concurrent clients' requests meet in one batch
TOL = PARITY_TOLERANCE["fp32"]


# ------------------------------------------------------------------------------------ reference

def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _jpeg(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


@pytest.fixture(scope="module")
def model():
    from remamber.export.model_source import load_model

    m, _ = load_model("conv", "tiny", 0, None)  # what `serve --preset tiny --seed 0` builds
    return m


@pytest.fixture(scope="module")
def onnx_file(model, tmp_path_factory):
    from remamber.export.onnx_export import export_onnx

    path = tmp_path_factory.mktemp("serve") / "tiny64.onnx"
    export_onnx(model, path, RES, progress=False)
    return path


@pytest.fixture(scope="module")
def cases(model):
    """(encoded image, sentence, decoded RGB image) with their reference logits and predict's mask."""
    from remamber.bench.runtimes import reference_logits

    rng = np.random.default_rng(7)
    cat, _ = __import__("remamber.samples", fromlist=["sample_image"]).sample_image("cat")
    images = [
        ("png", _png(cat.resize((71, 53)))),
        ("jpeg", _jpeg(cat.resize((40, 90)))),
        ("noise", _png(Image.fromarray(rng.integers(0, 256, (37, 61, 3), dtype=np.uint8)))),
        ("grey", _png(cat.convert("L").resize((64, 64)))),
    ]
    texts = ["the cat", "a small animal on the left", "  the   thing\tin the middle "]
    out = []
    for i, (kind, data) in enumerate(images):
        text = texts[i % len(texts)]
        decoded = Image.open(io.BytesIO(data))
        decoded.load()
        rgb = decoded.convert("RGB")
        ids, mask = tokenizer.tokenize([text])
        feeds = {"image": imageio.preprocess(rgb, RES).numpy(), "input_ids": ids.numpy(), "attention_mask": mask.numpy()}
        out.append({"kind": kind, "bytes": data, "text": text, "rgb": rgb, "feeds": feeds})
    # One reference forward for all cases (the reference scan's cost is per step, not per image).
    batch = {k: np.concatenate([c["feeds"][k] for c in out]) for k in out[0]["feeds"]}
    logits = reference_logits(model, batch)  # (B, 1, S, S)
    for case, row in zip(out, logits):
        case["logits"] = row[None]
        case["mask"] = imageio.postprocess(torch.from_numpy(case["logits"]), case["rgb"].size)  # predict's mask
    return out


def _check_answer(case: dict, logits: np.ndarray, probability: np.ndarray) -> None:
    """Server logits vs the reference within bench's fp32 parity bound; probability map vs predict's mask."""
    ref = case["logits"][0]  # (1, S, S)
    assert logits.shape == ref.shape, (case["kind"], logits.shape)
    metrics = compare_logits(ref, logits)
    assert metrics.nan_count == 0
    assert metrics.max_abs_error <= TOL * metrics.logit_scale, (case["kind"], metrics)
    width, height = case["rgb"].size
    assert probability.shape == (height, width), (case["kind"], probability.shape)
    resized = torch.nn.functional.interpolate(torch.from_numpy(case["logits"]), size=(height, width))[0, 0].numpy()
    expected_probability = 1.0 / (1.0 + np.exp(-resized.astype(np.float64)))
    assert np.abs(probability - expected_probability).max() <= 0.25 * TOL * metrics.logit_scale + 1e-6
    decided = np.abs(resized) > 1e-3  # pixels whose reference logit is not on the threshold
    assert np.array_equal((probability > 0.5)[decided], case["mask"][decided]), case["kind"]


# --------------------------------------------------------------------------------------- server

@pytest.fixture(scope="module")
def server(onnx_file):
    proc = serve_client.ServeProcess(
        ["--runtime", "ort", "--onnx", str(onnx_file), "--threads", "1", "--max-batch-size", "8",
         "--max-queue-delay-us", str(QUEUE_DELAY_US), "--max-image-pixels", str(MAX_PIXELS)],
        start_timeout_s=240,
    )
    with proc:
        yield proc


def test_serve_binds_loopback_and_reports_health_and_metrics(server):
    import tritonclient.http as httpclient

    ready = server.ready
    assert ready["runtime"] == "ort" and ready["resolution"] == RES
    for key in ("http", "grpc"):
        assert ready[key].startswith("127.0.0.1:"), ready
    http = httpclient.InferenceServerClient(url=ready["http"])
    assert http.is_server_live() and http.is_server_ready() and http.is_model_ready(ready["model"])
    config = http.get_model_config(ready["model"])
    assert config["max_batch_size"] == 8
    assert int(config["dynamic_batching"]["max_queue_delay_microseconds"]) == QUEUE_DELAY_US
    with urllib.request.urlopen(ready["metrics"], timeout=30) as response:
        text = response.read().decode()
    assert "nv_inference_request_success" in text


class _LaggingStats:
    """A stand-in for tritonclient's statistics call that records an execution a few reads late, as Triton
    does when it answers before it updates its statistics."""

    def __init__(self, counts_by_read: list[dict[int, int]]):
        self.reads = counts_by_read

    def get_inference_statistics(self, model_name, as_json):
        counts = self.reads.pop(0) if len(self.reads) > 1 else self.reads[0]
        return {"model_stats": [{"name": model_name, "batch_stats": [
            {"batch_size": size, "compute_infer": {"count": n}} for size, n in counts.items()]}]}


def test_executions_since_waits_for_the_statistics_to_count_every_reply():
    before = {1: 3}
    late = _LaggingStats([{1: 3, 2: 2}, {1: 3, 2: 2}, {1: 4, 2: 2}])  # the size-1 execution shows on the third read
    assert serve_client.executions_since(late, "m", before, served_at_least=5) == {1: 1, 2: 2}
    # a shortfall that never settles comes back after the wait, for the caller's check to report
    never = _LaggingStats([{1: 3, 2: 2}])
    assert serve_client.executions_since(never, "m", before, served_at_least=5, settle_s=0.2) == {2: 2}


def test_concurrent_requests_equal_predict_and_form_batches(server, cases):
    url, model_name = server.ready["grpc"], server.ready["model"]
    before = serve_client.batch_counts(serve_client.grpc_client(url), model_name)
    n_clients, per_client = 4, 8  # 32 requests
    results, failures = [], []
    barrier = threading.Barrier(n_clients)

    def client_thread(k: int):
        c = serve_client.grpc_client(url)
        barrier.wait(timeout=60)
        for j in range(per_client):
            case = cases[(k + j) % len(cases)]
            try:
                results.append((case, serve_client.infer(c, model_name, case["bytes"], case["text"], timeout_s=600)))
            except Exception as exc:  # reported below with the case
                failures.append((case["kind"], str(exc)[-800:]))

    threads = [threading.Thread(target=client_thread, args=(k,)) for k in range(n_clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=900)
    assert not any(t.is_alive() for t in threads), "client threads did not finish in time"
    assert not failures, failures
    assert len(results) == n_clients * per_client
    for case, answer in results:
        _check_answer(case, answer["logits"], answer["probability"])
    delta = serve_client.executions_since(serve_client.grpc_client(url), model_name, before, len(results))
    assert sum(size * n for size, n in delta.items()) == n_clients * per_client, delta
    assert any(size > 1 and n > 0 for size, n in delta.items()), f"no batch larger than 1 formed: {delta}"


def test_image_array_over_http_equals_predict(server, cases):
    import tritonclient.http as httpclient

    case = cases[0]
    pixels = np.asarray(case["rgb"], dtype=np.uint8)
    http = httpclient.InferenceServerClient(url=server.ready["http"])
    image = httpclient.InferInput("image_array", [1, *pixels.shape], "UINT8")
    image.set_data_from_numpy(pixels[None])
    text = httpclient.InferInput("text", [1, 1], "BYTES")
    text.set_data_from_numpy(np.array([[case["text"].encode()]], dtype=object))
    result = http.infer(server.ready["model"], [image, text])
    _check_answer(case, result.as_numpy("logits")[0], result.as_numpy("probability")[0])


def _error_of(server, inputs) -> str:
    from tritonclient.utils import InferenceServerException

    c = serve_client.grpc_client(server.ready["grpc"])
    with pytest.raises(InferenceServerException) as info:
        c.infer(server.ready["model"], inputs, client_timeout=120)
    return str(info.value)


def test_bad_requests_get_clear_errors_and_the_server_keeps_serving(server, cases):
    import tritonclient.grpc as grpcclient

    good = cases[1]
    big = Image.fromarray(np.zeros((160, 160, 3), dtype=np.uint8))  # 25,600 px > MAX_PIXELS
    wrong_dtype = serve_client.request_inputs(good["bytes"], "x")[:1]
    t = grpcclient.InferInput("text", [1, 1], "FP32")
    t.set_data_from_numpy(np.zeros((1, 1), dtype=np.float32))
    wrong_dtype.append(t)
    wrong_shape = serve_client.request_inputs(None, "the cat", image_array=np.zeros((8, 8, 4), dtype=np.uint8))
    bad = {
        "wrong dtype": (wrong_dtype, ["text", "FP32"]),
        "wrong shape": (wrong_shape, ["image_array", "shape"]),
        "empty text": (serve_client.request_inputs(good["bytes"], " \t "), ["empty", "referring expression"]),
        "undecodable image": (serve_client.request_inputs(b"\x89PNG not really", "the cat"), ["cannot be decoded"]),
        "empty image": (serve_client.request_inputs(b"", "the cat"), ["image is empty"]),
        "oversized image": (serve_client.request_inputs(_png(big), "the cat"), ["160x160", "limit", "downscale"]),
        "no image": (serve_client.request_inputs(None, "the cat"), ["exactly one of"]),
    }
    for name, (inputs, phrases) in bad.items():
        message = _error_of(server, inputs)
        for phrase in phrases:
            assert phrase in message, (name, message)
        answer = serve_client.infer(serve_client.grpc_client(server.ready["grpc"]), server.ready["model"],
                                    good["bytes"], good["text"])
        _check_answer(good, answer["logits"], answer["probability"])  # still serving, still right


def test_serve_bench_level_reports_latency_and_batching(server, tmp_path):
    from remamber.serve import bench

    row = bench.run_level(server.ready["grpc"], server.ready["model"], concurrency=2, total=6,
                          image_bytes=_png(Image.new("RGB", (32, 24), (200, 10, 10))), text="the red square",
                          timeout_s=120)
    assert row["completed"] == 6 and row["errors"] == 0
    assert sum(int(size) * n for size, n in row["batches"].items()) == 6
    lat = row["latency_ms"]
    assert 0 < lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
    assert row["throughput_rps"] == pytest.approx(6 / row["wall_s"])
    report = {"title": "test", "levels": [row]}
    assert (bench.plot(report, tmp_path / "b.png")).stat().st_size > 0
    assert "| 2 |" in bench.markdown_table(report)


def test_sigterm_stops_the_server_cleanly_leaving_no_workspace(server):
    """Last test of the module: the shared server is stopped here, as an operator would."""
    workspace = Path(server.ready["workspace"])
    assert workspace.is_dir()
    port = int(server.ready["grpc"].rsplit(":", 1)[1])
    assert server.stop(signal.SIGTERM, timeout_s=90) == 0, server.log_tail()
    assert not workspace.exists()
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", port)) != 0, "the gRPC port still accepts connections"
    assert "stopped" in server.log_tail()


# ----------------------------------------------------------------------------------- triton-repo

def _repo_args(out: Path, onnx: Path | None, **extra):
    import argparse

    from remamber.serve import repo

    parser = argparse.ArgumentParser()
    repo.add_arguments(parser)
    argv = ["--out", str(out), "--max-batch-size", "4"] + (["--onnx", str(onnx)] if onnx else [])
    for key, value in extra.items():
        argv += [f"--{key.replace('_', '-')}", str(value)] if value is not True else [f"--{key.replace('_', '-')}"]
    return parser.parse_args(argv)


@pytest.fixture(scope="module")
def repository(onnx_file, tmp_path_factory):
    from remamber.serve import repo

    out = tmp_path_factory.mktemp("repo") / "models"
    manifest = repo.write_repository(_repo_args(out, onnx_file, instances=2, max_queue_delay_us=3000))
    return out, manifest


def test_triton_repo_configs_parse_as_model_config(repository, onnx_file):
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    from remamber import native

    root, manifest = repository
    configs = {}
    for path in root.glob("*/config.pbtxt"):  # parsed here with protobuf directly, not through repo.py
        configs[path.parent.name] = text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())
    assert set(configs) == {"remamber", "remamber_preprocess", "remamber_onnx", "remamber_postprocess"}
    infer = configs["remamber_onnx"]
    assert infer.platform == "onnxruntime_onnx" and infer.max_batch_size == 4
    lib = native.library_path("ort").name
    assert list(infer.model_operations.op_library_filename) == [f"/models/lib/{lib}"]
    assert (root / "lib" / lib).read_bytes() == native.library_path("ort").read_bytes()
    assert (root / "remamber_onnx" / "1" / "model.onnx").read_bytes() == onnx_file.read_bytes()
    assert infer.instance_group[0].count == 2 and infer.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_CPU
    for name in ("remamber_preprocess", "remamber_onnx", "remamber_postprocess"):
        assert configs[name].dynamic_batching.max_queue_delay_microseconds == 3000
        assert configs[name].version_policy.latest.num_versions == 1
    steps = configs["remamber"].ensemble_scheduling.step
    assert [s.model_name for s in steps] == ["remamber_preprocess", "remamber_onnx", "remamber_postprocess"]
    assert dict(steps[1].input_map) == {"image": "pixels", "input_ids": "input_ids", "attention_mask": "attention_mask"}
    assert [d for d in infer.input[0].dims] == [3, RES, RES]
    assert json.loads((root / "repository.json").read_text())["launch"] == "tritonserver --model-repository=/models"


def test_repo_validation_rejects_what_triton_would(tmp_path, repository):
    from remamber.serve import repo

    bad = tmp_path / "m" / "config.pbtxt"
    bad.parent.mkdir()
    bad.write_text('name: "m"\nbackend: "python"\nmax_batch_sise: 4\n')  # misspelt field
    with pytest.raises(repo.ModelConfigError, match="max_batch_sise"):
        repo.parse_config(bad)
    broken = tmp_path / "copy"
    import shutil

    shutil.copytree(repository[0], broken)
    text = (broken / "remamber" / "config.pbtxt").read_text().replace('key: "image"\n      value: "pixels"', 'key: "pixel"\n      value: "pixels"')
    (broken / "remamber" / "config.pbtxt").write_text(text)
    with pytest.raises(repo.ModelConfigError, match="undeclared input 'pixel'"):
        repo.check_repository(broken)


def _load_python_model(path: Path, monkeypatch):
    """Import a repository model.py with a stand-in for triton_python_backend_utils (interface only)."""
    shim = types.ModuleType("triton_python_backend_utils")

    class Tensor:
        def __init__(self, name, array):
            self._name, self._array = name, np.asarray(array)

        def name(self):
            return self._name

        def as_numpy(self):
            return self._array

    class TritonError:
        def __init__(self, message):
            self._message = message

        def message(self):
            return self._message

    class InferenceResponse:
        def __init__(self, output_tensors, error=None):
            self.tensors, self.error = {t.name(): t.as_numpy() for t in output_tensors}, error

    shim.Tensor, shim.TritonError, shim.InferenceResponse = Tensor, TritonError, InferenceResponse
    shim.get_input_tensor_by_name = lambda request, name: request.get(name)
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", shim)
    spec = importlib.util.spec_from_file_location(f"_repo_{path.parent.parent.name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module, shim


def test_repo_python_models_in_process_equal_predict(repository, cases, monkeypatch):
    from remamber.export.ort_session import make_session

    root, _ = repository
    pre_mod, pb = _load_python_model(root / "remamber_preprocess" / "1" / "model.py", monkeypatch)
    post_mod, _ = _load_python_model(root / "remamber_postprocess" / "1" / "model.py", monkeypatch)
    pre, post = pre_mod.TritonPythonModel(), post_mod.TritonPythonModel()
    pre.initialize({"model_config": json.dumps(_config_json(root / "remamber_preprocess" / "config.pbtxt"))})
    post.initialize({"model_config": json.dumps(_config_json(root / "remamber_postprocess" / "config.pbtxt"))})
    # Request tensors as Triton hands them to a batching model: a leading batch dimension of 1.
    requests = [{"image": pb.Tensor("image", np.array([[c["bytes"]]], dtype=object)),
                 "text": pb.Tensor("text", np.array([[c["text"].encode()]], dtype=object))} for c in cases]
    requests.insert(1, {"image": pb.Tensor("image", np.array([[b"GIF89a broken"]], dtype=object)),
                        "text": pb.Tensor("text", np.array([[b"the cat"]], dtype=object))})
    responses = pre.execute(requests)
    assert len(responses) == len(requests)
    assert responses[1].error is not None and "cannot be decoded" in responses[1].error.message()
    del responses[1]
    session = make_session(root / "remamber_onnx" / "1" / "model.onnx")
    for case, response in zip(cases, responses):
        assert response.error is None
        for ours, theirs in (("pixels", "image"), ("input_ids", "input_ids"), ("attention_mask", "attention_mask")):
            np.testing.assert_array_equal(response.tensors[ours], case["feeds"][theirs])  # predict's exact inputs
        w, h = case["rgb"].size
        np.testing.assert_array_equal(response.tensors["image_size"], [[h, w]])
        logits = session.run(["logits"], {"image": response.tensors["pixels"], "input_ids": response.tensors["input_ids"],
                                          "attention_mask": response.tensors["attention_mask"]})[0]
        (answer,) = post.execute([{"logits": pb.Tensor("logits", logits), "image_size": pb.Tensor("image_size", response.tensors["image_size"])}])
        assert answer.error is None
        _check_answer(case, logits[0], answer.tensors["probability"][0])


def _config_json(path: Path) -> dict:
    from google.protobuf import json_format

    from remamber.serve import repo

    return json_format.MessageToDict(repo.parse_config(path), preserving_proto_field_name=True)


def test_repo_tensorrt_without_full_tensorrt_says_how_to_build_the_engine(tmp_path, onnx_file):
    from remamber.serve import repo

    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("full TensorRT is importable here: the repository would build the engine itself")
    with pytest.raises(RemamberError, match="trtexec --onnx=model.onnx") as info:
        repo.write_repository(_repo_args(tmp_path / "trt", onnx_file, platform="tensorrt"))
    assert "--dynamicPlugins=/models/lib/" in str(info.value)
    assert not (tmp_path / "trt").exists()  # nothing half-written


def test_repo_tensorrt_with_engine_loads_the_plugin_in_the_server(tmp_path, onnx_file):
    from remamber.serve import repo

    engine = tmp_path / "prebuilt.plan"
    engine.write_bytes(b"engine bytes from the server's TensorRT")
    manifest = repo.write_repository(_repo_args(tmp_path / "trt", onnx_file, platform="tensorrt", engine=engine,
                                                gpus="0,1"))
    root = tmp_path / "trt"
    configs = repo.check_repository(root)
    infer = configs["remamber_trt"]
    assert infer.platform == "tensorrt_plan" and list(infer.instance_group[0].gpus) == [0, 1]
    assert (root / "remamber_trt" / "1" / "model.plan").read_bytes() == engine.read_bytes()
    assert manifest["launch"].endswith("--backend-config=tensorrt,plugins=/models/lib/libremamber_trt_plugin.so")
    assert (root / "lib" / "libremamber_trt_plugin.so").is_file()
    with pytest.raises(InputError, match="exists"):
        repo.write_repository(_repo_args(root, onnx_file))
