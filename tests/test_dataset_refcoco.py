"""The RefCOCO-layout reader (remamber.data.refcoco) and the evaluation metrics (bench/eval_metrics.py).

Expected values are worked out by hand on tiny masks; the data sets are written by the tests
themselves in the LAVT/ReMamber layout (instances.json, refs(unc).p, train2014/)."""

from __future__ import annotations

import json
import os
import pickle

import numpy as np
import pytest
from PIL import Image

from remamber.bench import eval_metrics
from remamber.data.refcoco import DatasetError, RefDataset, decode_segmentation, split_matches

# ----------------------------------------------------------------------------------------- metrics


def test_intersection_union_and_summary_by_hand():
    pred = np.zeros((4, 5), bool)
    gt = np.zeros((4, 5), bool)
    pred[0:2, 0:3] = True  # 6 px
    gt[1:3, 1:4] = True  # 6 px; overlap rows 1, cols 1..2 = 2 px
    assert eval_metrics.intersection_union(pred, gt) == (2, 10)
    # Three sentences: (I, U) = (3, 5), (0, 4), (2, 2)
    s = eval_metrics.summarize([(3, 5), (0, 4), (2, 2)])
    assert s["sentences"] == 3
    assert s["oiou"] == pytest.approx(5 / 11, rel=1e-6)
    assert s["miou"] == pytest.approx((0.6 + 0 + 1) / 3, rel=1e-6)
    # exact ratios 0.6, 0, 1: P@0.5 and P@0.6 count two sentences, P@0.7..0.9 one
    assert s["precision"] == {"0.5": pytest.approx(2 / 3), "0.6": pytest.approx(2 / 3), "0.7": pytest.approx(1 / 3),
                              "0.8": pytest.approx(1 / 3), "0.9": pytest.approx(1 / 3)}
    # the official 1e-6 guard: an empty prediction of an empty target scores IoU 0
    assert eval_metrics.summarize([(0, 0)])["miou"] == 0.0
    assert eval_metrics.summarize([]) is None


def test_deltas_are_points():
    ref = {"oiou": 0.75, "miou": 0.70, "precision": {"0.5": 0.8}}
    run = {"oiou": 0.7412, "miou": 0.70, "precision": {"0.5": 0.79}}
    d = eval_metrics.deltas(run, ref)
    assert d["oiou_points"] == pytest.approx(-0.88)
    assert d["miou_points"] == pytest.approx(0.0)
    assert d["precision_points"]["0.5"] == pytest.approx(-1.0)


def test_predicted_mask_is_nearest_resize_then_sigmoid():
    logits = np.array([[1.0, -1.0], [-2.0, 3.0]], np.float32)
    mask, has_nan = eval_metrics.predicted_mask(logits[None, None], 4, 6)
    # nearest from 2 to 4 rows: source rows 0,0,1,1; 2 to 6 cols: 0,0,0,1,1,1
    expected = np.array([[1, 1, 1, 0, 0, 0]] * 2 + [[0, 0, 0, 1, 1, 1]] * 2, bool)
    assert not has_nan and np.array_equal(mask, expected)
    logits[0, 0] = np.nan
    mask, has_nan = eval_metrics.predicted_mask(logits, 2, 2)
    assert has_nan and np.array_equal(mask, [[False, False], [False, True]])  # sigmoid(NaN) > 0.5 is False


# ------------------------------------------------------------------------------------ segmentations


def test_polygon_rectangle_covers_the_half_open_box():
    # pycocotools rasterises the axis-aligned box x in [2, 7), y in [3, 9)
    mask = decode_segmentation([[2, 3, 7, 3, 7, 9, 2, 9]], 12, 10)
    expected = np.zeros((12, 10), bool)
    expected[3:9, 2:7] = True
    assert np.array_equal(mask, expected)


def test_multi_part_polygon_and_the_official_overlap_rule():
    two = decode_segmentation([[0, 0, 3, 0, 3, 2, 0, 2], [5, 4, 8, 4, 8, 6, 5, 6]], 8, 10)
    expected = np.zeros((8, 10), bool)
    expected[0:2, 0:3] = True
    expected[4:6, 5:8] = True
    assert np.array_equal(two, expected)
    # Official loader: foreground where exactly one part covers the pixel (annot[sum == 1] = 1).
    overlapping = decode_segmentation([[0, 0, 4, 0, 4, 4, 0, 4], [2, 2, 6, 2, 6, 6, 2, 6]], 8, 8)
    expected = np.zeros((8, 8), bool)
    expected[0:4, 0:4] = True
    expected[2:6, 2:6] = True
    expected[2:4, 2:4] = False
    assert np.array_equal(overlapping, expected)


def test_rle_uncompressed_compressed_and_lists():
    # Uncompressed COCO RLE, column-major runs starting with zeros: 1 zero, 2 ones, 3 zeros, 6 ones.
    expected = np.array([[0, 0, 1, 1], [1, 0, 1, 1], [1, 0, 1, 1]], bool)
    assert np.array_equal(decode_segmentation({"size": [3, 4], "counts": [1, 2, 3, 6]}, 3, 4), expected)
    from pycocotools import mask as mask_utils

    hand = np.zeros((5, 7), np.uint8)
    hand[1:4, 2:6] = 1
    rle = mask_utils.encode(np.asfortranarray(hand))
    as_json = {"size": rle["size"], "counts": rle["counts"].decode("ascii")}  # how instances.json stores it
    assert np.array_equal(decode_segmentation([as_json], 5, 7), hand.astype(bool))
    assert np.array_equal(decode_segmentation(as_json, 5, 7), hand.astype(bool))


@pytest.mark.parametrize("segmentation, words", [
    ([], "empty"),
    ([[1, 2, 3]], "even number"),
    ("polygon", "list of polygons"),
    ({"size": [3, 4]}, "counts"),
    ({"size": [2, 2], "counts": [1, 2, 3, 6]}, "RLE is 2x2"),
])
def test_bad_segmentation_is_a_dataset_error(segmentation, words):
    with pytest.raises(DatasetError, match=words):
        decode_segmentation(segmentation, 3, 4, where="annotation 7")


def test_split_selection_follows_refer_py():
    assert split_matches("testA", "testA") and split_matches("testA", "testAB") and not split_matches("testA", "testB")
    assert split_matches("test", "testB") and not split_matches("test", "val")
    assert split_matches("val", "val") and not split_matches("val", "train")


# ----------------------------------------------------------------------------------- dataset files


def write_layout(root, refs=None, annotations=None, images=None, image_files=True):
    """A two-image dataset: image 1 (10x8) with a one-part and an RLE annotation, image 2 (6x6)."""
    images = images if images is not None else [
        {"id": 1, "file_name": "a.png", "width": 10, "height": 8},
        {"id": 2, "file_name": "b.png", "width": 6, "height": 6},
    ]
    annotations = annotations if annotations is not None else [
        {"id": 11, "image_id": 1, "category_id": 1, "segmentation": [[1, 1, 4, 1, 4, 5, 1, 5]]},
        {"id": 12, "image_id": 1, "category_id": 1,
         "segmentation": {"size": [8, 10], "counts": [50, 8, 22]}},  # cols 6..: column-major runs
        {"id": 21, "image_id": 2, "category_id": 2, "segmentation": [[0, 0, 2, 0, 2, 2, 0, 2], [4, 4, 6, 4, 6, 6, 4, 6]]},
    ]
    refs = refs if refs is not None else [
        {"ref_id": 1, "image_id": 1, "ann_id": 11, "category_id": 1, "split": "val", "sent_ids": [101, 102],
         "sentences": [{"sent_id": 101, "sent": "the left box", "tokens": ["the", "left", "box"]},
                       {"sent_id": 102, "sent": "box on the left", "tokens": []}]},
        {"ref_id": 2, "image_id": 1, "ann_id": 12, "category_id": 1, "split": "testA", "sent_ids": [103],
         "sentences": [{"sent_id": 103, "sent": "the right box", "tokens": []}]},
        {"ref_id": 3, "image_id": 2, "ann_id": 21, "category_id": 2, "split": "val", "sent_ids": [104],
         "sentences": [{"sent_id": 104, "sent": "the two squares", "tokens": []}]},
    ]
    (root / "refcoco").mkdir(parents=True, exist_ok=True)
    (root / "train2014").mkdir(exist_ok=True)
    (root / "refcoco" / "instances.json").write_text(json.dumps(
        {"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "box"}]}))
    (root / "refcoco" / "refs(unc).p").write_bytes(pickle.dumps(refs, protocol=2))
    if image_files:
        for img in images:
            Image.new("RGB", (img["width"], img["height"]), (90, 20, 20)).save(root / "train2014" / img["file_name"])
    return root


def test_reads_every_sentence_of_the_split_and_the_masks(tmp_path):
    data = RefDataset(write_layout(tmp_path))
    assert data.splits() == ["testA", "val"]
    samples = data.samples("val")
    assert [(s.key, s.sentence) for s in samples] == [
        ("1:101", "the left box"), ("1:102", "box on the left"), ("3:104", "the two squares")]
    assert [s.key for s in data.samples("val", limit=2)] == ["1:101", "1:102"]
    box = data.mask(11)
    assert box.shape == (8, 10) and box[1:5, 1:4].all() and box.sum() == 12
    rle = data.mask(12)  # 50 zeros = columns 0..5 and 2 px of column 6; then 8 ones; then the rest
    assert rle.sum() == 8 and rle[2:8, 6].all() and rle[0:2, 7].all()
    two = data.mask(21)
    assert two.sum() == 8 and two[0:2, 0:2].all() and two[4:6, 4:6].all()
    assert data.image(1).size == (10, 8)


def _error(tmp_path, match, **layout):
    root = write_layout(tmp_path, **layout)
    with pytest.raises(DatasetError, match=match):
        RefDataset(root).samples("val")


def test_refs_naming_absent_images_or_annotations(tmp_path):
    bad_ann = [{"ref_id": 9, "image_id": 1, "ann_id": 999, "split": "val", "sentences": [{"sent": "x"}]}]
    _error(tmp_path / "a", "annotation ids 999", refs=bad_ann)
    bad_img = [{"ref_id": 9, "image_id": 77, "ann_id": 11, "split": "val", "sentences": [{"sent": "x"}]}]
    _error(tmp_path / "b", "image ids 77", refs=bad_img)
    wrong_image = [{"ref_id": 9, "image_id": 2, "ann_id": 11, "split": "val", "sentences": [{"sent": "x"}]}]
    _error(tmp_path / "c", "annotation of another image", refs=wrong_image)
    _error(tmp_path / "d", "image file", image_files=False)


def test_unknown_split_lists_the_splits(tmp_path):
    with pytest.raises(DatasetError, match=r"'testB' has no refs.*testA, val"):
        RefDataset(write_layout(tmp_path)).samples("testB")


def test_missing_files_say_what_and_where(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        RefDataset(tmp_path / "nowhere")
    root = write_layout(tmp_path / "x")
    with pytest.raises(DatasetError, match=r"refs\(google\)\.p is missing.*present: refs\(unc\)\.p"):
        RefDataset(root, split_by="google")
    with pytest.raises(DatasetError, match="unknown dataset"):
        RefDataset(root, dataset="coco")
    with pytest.raises(DatasetError, match=r"refcoco\+ does not exist; folders in .*refcoco, train2014"):
        RefDataset(root, dataset="refcoco+")
    (root / "refcoco" / "instances.json").write_text("{not json")
    with pytest.raises(DatasetError, match="not readable JSON"):
        RefDataset(root)
    (root / "refcoco" / "instances.json").unlink()
    with pytest.raises(DatasetError, match="instances.json is missing"):
        RefDataset(root)


class _Payload:
    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_refs_pickle_is_loaded_safely(tmp_path):
    root = write_layout(tmp_path)
    refs_file = root / "refcoco" / "refs(unc).p"
    payload = _Payload()
    payload.marker = tmp_path / "ran"
    refs_file.write_bytes(pickle.dumps([payload]))
    with pytest.raises(DatasetError, match=r"names the class (posix|os)\.system"):
        RefDataset(root)
    assert not payload.marker.exists()  # nothing from the file ran
    good = pickle.dumps([{"ref_id": 1}], protocol=2)
    refs_file.write_bytes(good[: len(good) // 2])
    with pytest.raises(DatasetError, match="not a readable refs pickle"):
        RefDataset(root)
    refs_file.write_bytes(pickle.dumps({"refs": []}))
    with pytest.raises(DatasetError, match="holds a dict, expected a list"):
        RefDataset(root)
    refs_file.write_bytes(pickle.dumps([{"ref_id": 1, "image_id": 1}]))
    with pytest.raises(DatasetError, match="lacks ann_id, split, sentences"):
        RefDataset(root)


def test_image_size_must_match_instances(tmp_path):
    root = write_layout(tmp_path)
    Image.new("RGB", (11, 8)).save(root / "train2014" / "a.png")
    with pytest.raises(DatasetError, match="a.png is 11x8 but .* records 10x8"):
        RefDataset(root).image(1)


def test_eval_cli_bad_data_is_exit_2(tmp_path, capsys):
    from remamber.cli import main

    root = write_layout(tmp_path)
    code = main(["eval", "--data", str(root), "--split", "testC", "--resolution", "64", "--out", str(tmp_path / "o")])
    assert code == 2 and "'testC' has no refs" in capsys.readouterr().err
    code = main(["eval", "--data", str(root), "--precision", "fp8", "--out", str(tmp_path / "o")])
    assert code == 2 and "fp8" in capsys.readouterr().err
    code = main(["eval", "--data", str(root), "--resume", "--resolution", "64", "--out", str(tmp_path / "o")])
    assert code == 2 and "samples.jsonl does not exist" in capsys.readouterr().err
