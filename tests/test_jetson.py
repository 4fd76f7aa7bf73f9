"""Jetson facts in bench reports (bench/jetson.py), from tool output written in NVIDIA's documented
formats (tests/data/jetson/, see its README): never on a device. Expected values are read off the
fixture files by hand; the tegrastats sampler runs a real child process that prints recorded lines.
"""

from __future__ import annotations

import json
import pathlib
import sys

import pytest

from remamber.bench import jetson

DATA = pathlib.Path(__file__).resolve().parent / "data" / "jetson"
SCHEMA = pathlib.Path(__file__).resolve().parent.parent / "bench" / "report_schema.json"


def text(name: str) -> str:
    return (DATA / name).read_text()


def test_release_power_mode_and_rails():
    assert jetson.parse_tegra_release(text("nv_tegra_release")) == {
        "l4t": "36.4.0", "jetpack": "6", "board": "generic", "eabi": "aarch64"}
    assert jetson.parse_tegra_release("not a release file") is None
    assert jetson.parse_nvpmodel(text("nvpmodel_q.txt")) == {"name": "15W", "id": 0}
    assert jetson.parse_nvpmodel("NV Power Mode: MAXN\n") == {"name": "MAXN", "id": None}
    lines = text("tegrastats_orin_nano.txt").splitlines()
    assert [jetson.parse_rail_mw(ln) for ln in lines] == [9000.0, 9400.0, 8600.0]
    assert jetson.parse_rail_mw(text("tegrastats_old_format.txt")) == 5021.0
    assert jetson.parse_rail_mw(lines[0], "VDD_SOC") == 2100.0
    assert jetson.parse_rail_mw("RAM 1/2MB CPU [1%@729]") is None


def test_clock_locking():
    default = jetson.parse_jetson_clocks(text("jetson_clocks_show_default.txt"))
    assert default["locked"] is False and default["unlocked"] == ["CPU", "GPU"]  # EMC already at its max
    locked = jetson.parse_jetson_clocks(text("jetson_clocks_show_locked.txt"))
    assert locked["locked"] is True and locked["unlocked"] == []
    assert locked["gpu_mhz"] == pytest.approx(624.75, abs=0.1) and locked["emc_mhz"] == 2133.0
    assert jetson.parse_jetson_clocks("nothing here") is None


def _fake_run(outputs):
    def run(cmd, timeout=10.0):
        out = outputs.get(cmd[0])
        return (out, None) if out is not None else (None, f"{cmd[0]} exited 1: Permission denied (root needed?)")
    return run


def test_detect_from_recorded_files(tmp_path):
    run = _fake_run({"nvpmodel": text("nvpmodel_q.txt"), "jetson_clocks": text("jetson_clocks_show_locked.txt")})
    info = jetson.detect(DATA / "nv_tegra_release", DATA / "device_tree_model", run=run)
    assert info["release"]["l4t"] == "36.4.0" and info["model"] == "NVIDIA Jetson Orin Nano Developer Kit"
    assert info["nvpmodel"] == {"name": "15W", "id": 0} and info["clocks"]["locked"] is True and info["notes"] == []
    # tools refused (jetson_clocks --show needs root): recorded as None with the reason
    info = jetson.detect(DATA / "nv_tegra_release", tmp_path / "no_model", run=_fake_run({}))
    assert info["nvpmodel"] is None and info["clocks"] is None and len(info["notes"]) == 3
    assert jetson.detect(tmp_path / "absent", run=run) is None  # not a Jetson
    _validate_env_jetson(info)


def _schema():
    return json.loads(SCHEMA.read_text())


def _validate_env_jetson(info):
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.validate(info, _schema()["properties"]["environment"]["properties"]["jetson"])


def test_power_sampler_reads_a_tegrastats_process():
    # A child that prints the recorded lines 50 ms apart, then idles like tegrastats until stopped.
    script = ("import sys, time\n"
              f"for line in open({str(DATA / 'tegrastats_orin_nano.txt')!r}):\n"
              "    print(line, end='', flush=True); time.sleep(0.05)\n"
              "time.sleep(60)\n")
    with jetson.PowerSampler(command=[sys.executable, "-c", script]) as power:
        import time

        deadline = time.time() + 20
        while len(power.samples_mw) < 3 and time.time() < deadline:
            time.sleep(0.02)
    assert power.samples_mw == [9000.0, 9400.0, 8600.0]
    entry = power.summary(wall_s=2.0, images=40)
    # mean 9000 mW over 2 s = 18000 mJ, over 40 images = 450 mJ each
    assert entry == {"rail": "VDD_IN", "samples": 3, "mean_mw": 9000.0, "max_mw": 9400.0,
                     "energy_per_image_mj": 450.0, "reason": None}
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.validate(entry, _schema()["$defs"]["row"]["properties"]["power"])


def test_power_sampler_off_a_jetson(tmp_path):
    with jetson.PowerSampler(release_file=tmp_path / "nv_tegra_release") as power:
        pass
    assert not power.on_jetson and not power.active
    assert power.summary(1.0, 1)["reason"].startswith("not a Jetson")
    with pytest.raises(ValueError):
        jetson.energy_per_image_mj(1000.0, 1.0, 0)
