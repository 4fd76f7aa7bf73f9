"""Shared by the training tests that read the synthetic shapes dataset: a small generated dataset
preloaded at one resolution, and the generator's own scenes replayed from its seed (the independent
truth that the dataset's annotations and everything built from them are checked against)."""

from __future__ import annotations

import numpy as np


def small_shapes_split(tmp_path_factory, name: str, images: int, seed: int, resolution: int):
    """(root, RefDataset, train SplitTensors) of a freshly generated synthetic dataset."""
    from remamber.data.refcoco import RefDataset
    from remamber.data.synthetic import generate
    from remamber.train.data import load_split

    root = tmp_path_factory.mktemp(name)
    generate(root, images=images, seed=seed)
    dataset = RefDataset(root)
    return root, dataset, load_split(dataset, "train", resolution)


def generator_scenes(seed: int, images: int) -> dict[int, list[tuple[str, str]]]:
    """Image id -> (shape, colour) of each object, replayed from the generator's seeded scenes."""
    from remamber.data.synthetic import IMAGE_SIZES, make_scene

    scenes = {}
    for index in range(images):
        rng = np.random.default_rng([seed, index])
        width, height = IMAGE_SIZES[int(rng.integers(len(IMAGE_SIZES)))]
        shapes, _ = make_scene(rng, width, height)
        scenes[index + 1] = [(s.shape, s.colour) for s in shapes]
    return scenes
