"""Ctrl-C (SIGINT) and SIGTERM at several points of `remamber-deploy export` leave no file or folder
behind and exit with 130 / 143.

Each case runs the real command line (remamber.cli.main -> export -> onnx_export.export_onnx ->
remamber.atomic) in a subprocess, on a tiny one-scan model so the export takes seconds, with one
step made to announce itself on stdout and wait, so the signal lands exactly there:

* load:   while the model is being built (nothing written yet);
* trace:  inside torch.export;
* write:  after the ONNX file was saved into its hidden temporary folder, during the graph checks
          (the point where SIGTERM used to leave a hidden folder behind).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

DRIVER = textwrap.dedent('''
    import sys, time
    import torch
    import remamber.ops
    from remamber import cli
    from remamber.export import graph_checks, model_source, onnx_export

    phase = sys.argv[1]

    def wait_here(name):
        if name == phase:
            print("PHASE", name, flush=True)
            time.sleep(120)

    class OneScan(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.A = torch.nn.Parameter(-torch.ones(8, 1))

        def forward(self, image, input_ids, attention_mask):
            b = image.shape[0]
            x = image.reshape(b, 3, -1)[:, :, :64].repeat(1, 3, 1)[:, :8]
            bc = x[:, :2].reshape(b, 2, 1, 64)
            y = remamber.ops.selective_scan(x, x.sigmoid(), self.A, bc, bc, None, None, True)
            s = y.mean(dim=(1, 2)) + attention_mask.sum(1) * 0 + input_ids.sum(1) * 0
            return s[:, None, None, None].expand(b, 1, 32, 32).contiguous()

    def load_model(*args, **kwargs):
        wait_here("load")
        return OneScan().eval(), "one-scan test model"

    real_export = torch.export.export

    def export(*args, **kwargs):
        wait_here("trace")
        return real_export(*args, **kwargs)

    real_check = graph_checks.check_onnx

    def check_onnx(*args, **kwargs):
        wait_here("write")
        return real_check(*args, **kwargs)

    model_source.load_model = load_model
    torch.export.export = export
    graph_checks.check_onnx = check_onnx
    sys.exit(cli.main(["export", "--preset", "tiny", "--resolution", "32", "-o", sys.argv[2], "--quiet"]))
''')


def _run_until(phase: str, out_dir: Path, sig: int) -> tuple[int, str]:
    driver = out_dir.parent / "driver.py"
    driver.write_text(DRIVER)
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, str(driver), phase, str(out_dir / "model.onnx")], cwd=out_dir,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 240
    line = ""
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.startswith("PHASE") or not line:
            break
    if not line.startswith("PHASE"):
        proc.kill()
        _, err = proc.communicate()
        pytest.fail(f"the export never reached phase {phase!r}: {err[-2000:]}")
    proc.send_signal(sig)
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail(f"the export did not stop within 60 s of {signal.Signals(sig).name}")
    return proc.returncode, err


@pytest.mark.parametrize("phase", ["load", "trace", "write"])
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupted_export_leaves_nothing(tmp_path, phase, sig):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    code, err = _run_until(phase, out_dir, sig)
    assert code == (130 if sig == signal.SIGINT else 143), err[-2000:]
    assert ("interrupted" if sig == signal.SIGINT else "terminated") in err
    assert "Traceback" not in err, err[-2000:]
    assert sorted(p.name for p in out_dir.iterdir()) == []  # hidden temporary folders included
