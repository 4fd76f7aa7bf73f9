"""Outputs are checked before any work: never an input, never a folder, never an unwritable place,
never an existing file of another kind unless --force (remamber.validate.paths); a timing cache
TensorRT cannot read is refused or left as it is, never replaced by an empty one."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from remamber.cli import main
from remamber.errors import InputError
from remamber.validate.paths import check_output_dir, check_output_file, sniff

from test_bad_input_graphs import rtx, tiny_graph  # noqa: F401  (rtx is a fixture)


@pytest.mark.parametrize("content,kind", [
    (b"", "empty"),
    (b"\x89PNG\r\n\x1a\n" + b"\0" * 8, "png"),
    (b"\xff\xd8\xff\xe0", "jpeg"),
    (b"\x93NUMPY\x01\x00", "npy"),
    (b"PK\x03\x04rest", "zip"),
    (b"vtrt\0\0\0\0", "engine"),
    (b"ftrt\0\0\0\0", "engine"),
    (b"ptrtd\0\0\0", "timing-cache"),
    (b'  {"rows": []}', "json"),
    ("caf\u00e9 au lait\n".encode(), "text"),
    (bytes(range(256)), "unknown"),
])
def test_sniff(tmp_path, content, kind):
    path = tmp_path / "f"
    path.write_bytes(content)
    assert sniff(path) == kind


def test_sniff_recognises_a_real_onnx_file(tmp_path):
    assert sniff(tiny_graph(tmp_path / "g.onnx")) == "onnx"


def test_output_checks(tmp_path):
    source = tiny_graph(tmp_path / "model.onnx")
    link = tmp_path / "link.engine"
    link.symlink_to(source)
    with pytest.raises(InputError, match="same file as the input"):
        check_output_file(link, "engine", "-o", inputs=[source])
    with pytest.raises(InputError, match="same file as the input"):
        check_output_file(tmp_path / "sub" / ".." / "model.onnx", "onnx", "-o", inputs=[source], force=True)
    with pytest.raises(InputError, match="holds an ONNX model, not a TensorRT engine.*--force"):
        check_output_file(source, "engine", "-o")
    assert check_output_file(source, "engine", "-o", force=True) == source  # explicitly allowed
    with pytest.raises(InputError, match="is a folder"):
        check_output_file(tmp_path, "engine", "-o")
    with pytest.raises(InputError, match="is a file, so no folder can be made there"):
        check_output_file(source / "x.engine", "engine", "-o")
    with pytest.raises(InputError, match="is a file, not a folder"):
        check_output_dir(source, "--out")
    check_output_dir(tmp_path / "new" / "deeper", "--out")  # creatable
    assert not (tmp_path / "new").exists()  # checking creates nothing


def _engine_cli(*args):
    return main(["build-engine", *map(str, args), "--quiet", "--flavour", "tensorrt_rtx"])


def test_build_engine_never_replaces_its_input(rtx, tmp_path, capsys):
    onnx_path = tiny_graph(tmp_path / "model.onnx")
    data = onnx_path.read_bytes()
    for out in (onnx_path, tmp_path / "." / "model.onnx"):
        assert _engine_cli(onnx_path, "-o", out, "--force") == 2
        assert "same file as the input" in capsys.readouterr().err
    assert _engine_cli(onnx_path, "-o", tmp_path / "e.engine", "--timing-cache", onnx_path) == 2
    assert "same file as the input" in capsys.readouterr().err
    assert onnx_path.read_bytes() == data
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]


def test_build_engine_refuses_other_kinds_unless_forced(rtx, tmp_path, capsys):
    onnx_path = tiny_graph(tmp_path / "model.onnx")
    other = tiny_graph(tmp_path / "other.onnx")
    assert _engine_cli(onnx_path, "-o", other) == 2
    assert "holds an ONNX model, not a TensorRT engine" in capsys.readouterr().err
    assert other.read_bytes()[:1] == b"\x08"
    assert _engine_cli(onnx_path, "-o", other, "--force") == 0
    assert other.read_bytes()[:4] in (b"vtrt", b"ftrt")


@pytest.mark.parametrize("kind", ["onnx", "random"])
def test_timing_cache_that_is_not_a_cache_is_refused(rtx, tmp_path, capsys, kind):
    onnx_path = tiny_graph(tmp_path / "model.onnx")
    cache = tmp_path / "timing.cache"
    if kind == "onnx":
        tiny_graph(cache)
    else:
        cache.write_bytes(np.random.default_rng(1).bytes(300))
    before = cache.read_bytes()
    assert _engine_cli(onnx_path, "-o", tmp_path / "e.engine", "--timing-cache", cache) == 2
    err = capsys.readouterr().err
    assert "--timing-cache" in err and "--force" in err and "Traceback" not in err
    assert cache.read_bytes() == before
    assert not (tmp_path / "e.engine").exists()


def test_timing_cache_round_trip_never_loses_a_cache(rtx, tmp_path, capsys):
    """A fresh path gets a cache; a cache this TensorRT cannot use (no GPU here) is left unchanged."""
    onnx_path = tiny_graph(tmp_path / "model.onnx")
    cache = tmp_path / "timing.cache"
    assert _engine_cli(onnx_path, "-o", tmp_path / "a.engine", "--timing-cache", cache) == 0
    first = cache.read_bytes()
    assert sniff(cache) == "timing-cache"
    grown = first + b"\0" * 64  # stands for a cache grown on a GPU machine: must survive a CPU build
    cache.write_bytes(grown)
    capsys.readouterr()
    assert _engine_cli(onnx_path, "-o", tmp_path / "b.engine", "--timing-cache", cache) == 0
    err = capsys.readouterr().err
    if "left unchanged" in err:  # this TensorRT could not read it (e.g. no GPU): kept byte for byte
        assert cache.read_bytes() == grown
    else:  # read and updated by TensorRT
        assert sniff(cache) == "timing-cache"


def test_predict_and_export_outputs_checked_first(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "mask.png").write_text("my notes")
    assert main(["predict", "--text", "the cat", "--out", str(out)]) == 2
    assert "mask.png already exists and holds a text file" in capsys.readouterr().err
    assert (out / "mask.png").read_text() == "my notes"
    notes = tmp_path / "notes.onnx"
    notes.write_text("my notes")
    assert main(["export", "--preset", "tiny", "-o", str(notes)]) == 2
    assert "holds a text file, not an ONNX model" in capsys.readouterr().err
    assert main(["bench", "--save-baseline", str(notes), "--out", str(tmp_path / "r")]) == 2
    assert "holds a text file, not a JSON file" in capsys.readouterr().err
    assert notes.read_text() == "my notes"
    baseline = tmp_path / "base.json"
    baseline.write_text(json.dumps({"rows": []}))
    assert main(["bench", "--baseline", str(baseline), "--save-baseline", str(baseline),
                 "--out", str(tmp_path / "r")]) == 2
    assert not (tmp_path / "r").exists()


def test_unwritable_output_folder(tmp_path, capsys):
    """A folder the user cannot write to; root writes through permission bits, so as root the
    read-only /proc stands in (os.access says yes there, a real write says no)."""
    if os.geteuid() != 0:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        target, expected = locked / "x", "permission denied"
    else:
        assert Path("/proc/self").exists(), "Linux CI has /proc"
        target, expected = Path("/proc/remamber-test"), "cannot write in /proc"
    assert main(["predict", "--text", "the cat", "--out", str(target)]) == 2
    assert expected in capsys.readouterr().err
