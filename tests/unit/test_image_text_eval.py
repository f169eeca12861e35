"""Image-text evaluation: the MMVP reader and pair rule on a hand-built folder with a known answer, the
generated Trifeature benchmark in the same layout, captions and zero-shot prompts, retrieval with duplicate
captions, and the per-stage / integrated scores of the run's evaluation."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from PIL import Image

from mcl_ray.data.captions import caption_images, class_prompts, statement
from mcl_ray.data.mmvp import PROMPT, load_mmvp, trifeature_mmvp, write_mmvp
from mcl_ray.errors import DataError
from mcl_ray.eval.image_text import mmvp_pair_accuracy, retrieval_at_1, zero_shot_accuracy

RGB = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255)}


def color_features(images: np.ndarray) -> np.ndarray:
    """A 'model' that sees only colour: the mean RGB of each image."""
    return images.reshape(len(images), -1, 3).mean(1)


def text_color_features(texts: list[str]) -> np.ndarray:
    return np.asarray([next(np.asarray(v, float) for k, v in RGB.items() if k in t) for t in texts])


def write_folder(root, rows, folder="MLLM_VLM Images"):
    """rows: (type, statement, colour of its image) in question order."""
    for qid, (kind, _, colour) in enumerate(rows, start=1):
        (root / folder / kind).mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((8, 8, 3), RGB[colour], np.uint8)).save(root / folder / kind / f"{qid}.jpg", quality=100)
    with (root / "Questions.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["Question ID", "Type", "Statement"])
        for qid, (kind, text, _) in enumerate(rows, start=1):
            writer.writerow([qid, kind, text])


@pytest.mark.parametrize("folder", ["MLLM_VLM Images", "MMVP_VLM Images"])
def test_mmvp_folder_scored_with_the_official_pair_rule(tmp_path, folder):
    rows = [
        ("Color and Appearance", "the square is red", "red"), ("Color and Appearance", "the square is blue", "blue"),  # right
        ("Color and Appearance", "a green thing", "green"), ("Color and Appearance", "a red thing", "green"),  # one wrong
        ("Texts", "it is blue", "blue"), ("Texts", "it is green", "green"),  # right
    ]
    write_folder(tmp_path, rows, folder)
    bench = load_mmvp(tmp_path, 8)
    assert bench.categories == ["Color and Appearance", "Color and Appearance", "Texts"]
    assert bench.prompts[0] == PROMPT + "the square is red"
    scores = mmvp_pair_accuracy(color_features(bench.images), text_color_features(bench.statements), bench.categories)
    assert scores == {"Color and Appearance": 0.5, "Texts": 1.0, "*": pytest.approx(2 / 3)}


def test_mmvp_pairs_count_only_when_both_statements_pick_their_own_image():
    image = np.array([[1.0, 0], [0, 1.0]])
    both_pick_first = np.array([[1.0, 0.1], [1.0, 0.2]])
    assert mmvp_pair_accuracy(image, both_pick_first, ["x"])["*"] == 0.0
    assert mmvp_pair_accuracy(image, np.array([[1.0, 0], [0, 1.0]]), ["x"])["*"] == 1.0


def test_mmvp_folder_problems_name_the_file(tmp_path):
    with pytest.raises(DataError, match="Questions.csv"):
        load_mmvp(tmp_path, 8)
    write_folder(tmp_path, [("A", "red", "red"), ("A", "blue", "blue")])
    (tmp_path / "MLLM_VLM Images" / "A" / "2.jpg").unlink()
    with pytest.raises(DataError, match="no image for question 2"):
        load_mmvp(tmp_path, 8)
    write_folder(tmp_path, [("A", "red", "red"), ("B", "blue", "blue")])
    with pytest.raises(DataError, match="spans two types"):
        load_mmvp(tmp_path, 8)


def test_generated_trifeature_pairs_differ_in_exactly_their_attribute_and_round_trip(tmp_path):
    bench = trifeature_mmvp(4, 16, seed=3)
    assert bench.categories == ["shape"] * 4 + ["texture"] * 4 + ["color"] * 4
    words = [s.split() for s in bench.statements]
    for p, category in enumerate(bench.categories):
        differing = [i for i, (a, b) in enumerate(zip(words[2 * p], words[2 * p + 1])) if a != b]
        assert len(differing) == 1  # one attribute word differs: shape is word 1, texture word 3, colour word 0
        assert differing[0] == {"color": 0, "shape": 1, "texture": 3}[category]
    back = load_mmvp(write_mmvp(tmp_path / "tri", bench), 16)
    assert back.statements == bench.statements and back.categories == bench.categories
    assert np.array_equal(back.images, bench.images)  # PNG: lossless


def test_captions_name_every_attribute_and_prompts_marginalise_the_others():
    names = {"shape": ("square", "circle"), "texture": ("solid", "dots"), "color": ("red", "blue")}
    attrs = {"shape": np.array([0, 1, 1]), "texture": np.array([1, 0, 1]), "color": np.array([0, 0, 1])}
    captions = caption_images(attrs, names, seed=0)
    assert all(all(w in c for w in ws) for c, ws in zip(captions, [("square", "dots", "red"), ("circle", "solid", "red"),
                                                                       ("circle", "dots", "blue")]))
    assert statement({"shape": "star", "texture": "grid", "color": "pink"}) == "pink star with grid texture"
    prompts = class_prompts(names, "color")
    assert len(prompts) == 2 and len(prompts[0]) == 4 and all("red" in p for p in prompts[0])
    assert class_prompts({"label": ("cat", "dog")}, "label") == [["a photo of cat"], ["a photo of dog"]]


def test_zero_shot_and_retrieval_treat_identical_captions_as_one():
    image = np.eye(3)
    assert zero_shot_accuracy(image, np.array([0, 1, 1]), np.eye(3)) == pytest.approx(2 / 3)
    text = np.array([[1.0, 0, 0], [0, 1.0, 0], [0, 1.0, 0.01]])  # captions 1 and 2 are the same string
    scores = retrieval_at_1(image, text, np.array([0, 1, 1]))
    assert scores == {"i2t_r1": 1.0, "t2i_r1": 1.0}
    assert retrieval_at_1(image, text, np.array([0, 1, 2]))["t2i_r1"] == pytest.approx(2 / 3)


class ColourTowers:
    """Fake towers for the run's evaluation: images -> mean colour (+ a stage-specific channel), texts -> colour."""

    def __init__(self, bias: float):
        self.bias, self.training = bias, False

    def eval(self):
        pass

    def train(self, mode=True):
        pass

    def __call__(self, images):
        import torch

        return images.float().mean(dim=(2, 3)) + self.bias

    def tokenize(self, texts):
        import torch

        return torch.tensor([next(i for i, c in enumerate(RGB) if c in t) for t in texts])

    def encode_text(self, tokens):
        import torch

        return torch.nn.functional.one_hot(tokens, 3).float()


def test_run_evaluation_scores_each_stage_and_the_integration(tmp_path):
    from mcl_ray.data.augment_spec import AugmentSpec
    from mcl_ray.data.base import ImageSet
    from mcl_ray.data.experiment_data import ExperimentData
    from mcl_ray.eval.spec import EvalSpec
    from mcl_ray.plan.image_text import ImageTextEvaluation, category_key

    assert category_key("Color and Appearance") == "color_and_appearance"
    rng = np.random.default_rng(0)
    test = ImageSet(images=rng.integers(0, 255, (6, 8, 8, 3), dtype=np.uint8),
                    attributes={"color": np.array([0, 1, 2, 0, 1, 2])}, captions=["red", "green", "blue"] * 2,
                    value_names={"color": ("red", "green", "blue")})
    data = ExperimentData(pretrain=test, probe=test, test=test)
    write_folder(tmp_path / "mmvp", [("Colour", "a red one", "red"), ("Colour", "a blue one", "blue")])
    evaluation = ImageTextEvaluation(EvalSpec(mmvp=str(tmp_path / "mmvp"), retrieval_samples=4), data, tmp_path)
    features = np.eye(3)[[0, 1, 2, 0, 1, 2]]  # stored test embeddings that match the colour labels exactly
    alone, integrated = evaluation.add_stage(ColourTowers(0.0), features, AugmentSpec(crop_size=8))
    assert alone["color"]["zeroshot"] == 1.0
    assert alone["mmvp"]["pairs"] == 1.0 and alone["colour"]["mmvp"] == 1.0
    assert set(alone["retrieval"]) == {"i2t_r1", "t2i_r1"}
    assert integrated == alone  # one stage: integration is that stage
    noise = rng.normal(size=(6, 3))
    alone2, integrated2 = evaluation.add_stage(ColourTowers(5.0), noise, AugmentSpec(crop_size=8))
    assert len(evaluation.parts["test_image"]) == 2
    assert integrated2["color"]["zeroshot"] >= alone2["color"]["zeroshot"]  # the first stage's features still count
