"""Client side of ``remamber-deploy serve``: start it as a child process, send requests, read statistics.

Used by ``serve-bench`` and the tests; a user's client needs only ``tritonclient`` (README example).
``ServeProcess`` starts ``remamber-deploy serve`` with a ready file, waits until the model is ready
(or the process dies, or a deadline passes), and stops it with SIGTERM, as an operator would.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from remamber.errors import RemamberError

from . import pipeline


class ServeProcess:
    """``remamber-deploy serve ARGS`` in a child process; ``ready`` holds its endpoints once started."""

    def __init__(self, args: list[str], start_timeout_s: float = 300.0, log_path: Path | None = None):
        self.args = list(args)
        self.start_timeout_s = start_timeout_s
        self._tmp = Path(tempfile.mkdtemp(prefix="remamber-serve-client-"))
        self.ready_file = self._tmp / "ready.json"
        self.log_path = log_path or self._tmp / "serve.log"
        self.process: subprocess.Popen | None = None
        self.ready: dict = {}
        self.returncode: int | None = None

    def start(self) -> dict:
        command = [sys.executable, "-m", "remamber.cli", "serve", *self.args, "--ready-file", str(self.ready_file)]
        self._log = open(self.log_path, "wb")
        self.process = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + self.start_timeout_s
        while not self.ready_file.exists():
            if self.process.poll() is not None:
                raise RemamberError(f"remamber-deploy serve exited with status {self.process.returncode} before it was "
                                    f"ready:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RemamberError(f"remamber-deploy serve was not ready after {self.start_timeout_s:.0f} s:\n{self.log_tail()}")
            time.sleep(0.2)
        self.ready = json.loads(self.ready_file.read_text())
        return self.ready

    def log_tail(self, lines: int = 40) -> str:
        if getattr(self, "saved_log", None) is not None:
            return "\n".join(self.saved_log.splitlines()[-lines:])
        try:
            return "\n".join(Path(self.log_path).read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 60.0) -> int | None:
        """Send ``sig`` and wait; kill the process group if it does not exit in time. Returns the exit status."""
        if self.process is not None and self.returncode is None:
            if self.process.poll() is None:
                os.kill(self.process.pid, sig)
                try:
                    self.process.wait(timeout=timeout_s)
                except subprocess.TimeoutExpired:
                    os.killpg(self.process.pid, signal.SIGKILL)
                    self.process.wait()
            self.returncode = self.process.returncode
            self._log.close()
            if self.log_path.parent == self._tmp:
                self.saved_log = self.log_tail(200)  # kept for messages after the folder is gone
        shutil.rmtree(self._tmp, ignore_errors=True)
        return self.returncode

    def __enter__(self):
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc):
        self.stop()
        return False


def grpc_client(url: str):
    import tritonclient.grpc as grpcclient

    return grpcclient.InferenceServerClient(url=url)


def request_inputs(image_bytes: bytes | None = None, text: str | bytes = "", image_array: np.ndarray | None = None):
    """tritonclient gRPC inputs for one request (batch of one)."""
    import tritonclient.grpc as grpcclient

    inputs = []
    if image_bytes is not None:
        i = grpcclient.InferInput(pipeline.IMAGE, [1, 1], "BYTES")
        i.set_data_from_numpy(np.array([[image_bytes]], dtype=object))
        inputs.append(i)
    if image_array is not None:
        arr = np.ascontiguousarray(image_array)[None]
        i = grpcclient.InferInput(pipeline.IMAGE_ARRAY, list(arr.shape), "UINT8")
        i.set_data_from_numpy(arr)
        inputs.append(i)
    t = grpcclient.InferInput(pipeline.TEXT, [1, 1], "BYTES")
    t.set_data_from_numpy(np.array([[text.encode("utf-8") if isinstance(text, str) else text]], dtype=object))
    inputs.append(t)
    return inputs


def infer(client, model: str, image_bytes: bytes | None = None, text: str | bytes = "", image_array=None,
          timeout_s: float = 120.0) -> dict[str, np.ndarray]:
    """One request; returns {"logits": (1,S,S), "probability": (H,W)} without the batch dimension."""
    result = client.infer(model, request_inputs(image_bytes, text, image_array), client_timeout=timeout_s)
    return {name: result.as_numpy(name)[0] for name in (pipeline.LOGITS, pipeline.PROBABILITY)}


def batch_counts(client, model: str) -> dict[int, int]:
    """{batch size: executions} from the server's statistics for ``model`` (cumulative since start)."""
    stats = client.get_inference_statistics(model_name=model, as_json=True)
    counts: dict[int, int] = {}
    for model_stats in stats.get("model_stats", []):
        for entry in model_stats.get("batch_stats", []):
            size = int(entry["batch_size"])
            counts[size] = counts.get(size, 0) + int(entry.get("compute_infer", {}).get("count", 0))
    return counts


# How long executions_since waits for Triton's statistics to count the last executions.
STATS_SETTLE_S = 10.0


def executions_since(client, model: str, before: dict[int, int], served_at_least: int,
                     settle_s: float = STATS_SETTLE_S) -> dict[int, int]:
    """{batch size: executions} since the ``before`` counts of batch_counts (sizes with none left out).
    Why it polls: Triton sends the responses before it records the execution's statistics
    (triton-inference-server/server#5670), so read at once after the last reply, the last batch can be
    missing. The counts are read again until the executions cover ``served_at_least`` images (the
    replies received) or ``settle_s`` has passed; then the caller's check sees the shortfall."""
    deadline = time.monotonic() + settle_s
    while True:
        after = batch_counts(client, model)
        batches = {size: after.get(size, 0) - before.get(size, 0) for size in sorted(set(after) | set(before))}
        batches = {size: n for size, n in batches.items() if n > 0}
        if sum(size * n for size, n in batches.items()) >= served_at_least or time.monotonic() >= deadline:
            return batches
        time.sleep(0.05)


def encode_png(image) -> bytes:
    import io

    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
