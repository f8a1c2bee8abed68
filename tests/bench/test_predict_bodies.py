"""bench._predict_bodies: the check that each /predict answer is the one for its own request's image."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from bench._predict_bodies import (
    canvas_png,
    check_separable,
    count_wrong_answers,
    digit_images,
    digit_payloads,
    expected_answers,
    png_payloads,
    sent_image,
)
from ffcore.checkpoint import load_model, save_model
from ffcore.config import RunConfig
from ffcore.model import FFNetwork, predict


@pytest.fixture(scope="module")
def model_bytes() -> bytes:
    config = RunConfig(device="cpu", hidden=[30, 20])
    model = FFNetwork(config)
    model.reset_parameters(torch.Generator().manual_seed(0))
    return save_model(model, config)


def answer_as_the_api_gives(model_bytes: bytes, image: np.ndarray) -> bytes:
    """The fields of PredictionOut the check reads, for one image predicted alone (no batch)."""
    model, _ = load_model(model_bytes)
    result = predict(model, image[None])
    return json.dumps(
        {
            "scan_label": int(result.scan_label[0]),
            "goodness": result.goodness[0].tolist(),
            "scan_scores": result.scan_scores[0].tolist(),
            "head_probs": result.head_probs[0].tolist(),
            "image": np.round(image, 4).tolist(),
        }
    ).encode()


@pytest.mark.parametrize("kind", ["json", "png"])
def test_right_answers_pass_and_swapped_ones_are_caught(model_bytes, kind):
    bodies = {"json": digit_payloads, "png": png_payloads}[kind](4)
    expected = expected_answers(model_bytes, kind, bodies)  # one batch of four
    check_separable(bodies, expected)
    answers = [answer_as_the_api_gives(model_bytes, sent_image(kind, body, "mnist")) for body in bodies]

    # Unbatched answers match the batched expectation within the tolerance.
    assert count_wrong_answers(list(enumerate(answers)), expected) == 0
    # Bodies 0 and 1 answered with each other's answers: both are caught, the others not.
    swapped = [(0, answers[1]), (1, answers[0]), (2, answers[2]), (3, answers[3])]
    assert count_wrong_answers(swapped, expected) == 2


def test_one_field_from_another_image_makes_an_answer_wrong(model_bytes):
    bodies = digit_payloads(2)
    expected = expected_answers(model_bytes, "json", bodies)
    answer = json.loads(answer_as_the_api_gives(model_bytes, sent_image("json", bodies[0], "mnist")))
    # Body 1's answer but for body 0's goodness (labels are not compared: an untrained model's may tie).
    other = json.loads(answer_as_the_api_gives(model_bytes, sent_image("json", bodies[1], "mnist")))
    mixed = other | {"goodness": answer["goodness"]}
    assert count_wrong_answers([(1, json.dumps(other).encode())], expected) == 0
    assert count_wrong_answers([(1, json.dumps(mixed).encode())], expected) == 1


def test_unreadable_or_incomplete_answers_are_wrong(model_bytes):
    bodies = digit_payloads(1)
    expected = expected_answers(model_bytes, "json", bodies)
    answer = json.loads(answer_as_the_api_gives(model_bytes, sent_image("json", bodies[0], "mnist")))
    incomplete = {k: v for k, v in answer.items() if k != "head_probs"}
    assert count_wrong_answers([(0, b"not json"), (0, json.dumps(incomplete).encode())], expected) == 2


def test_the_png_is_read_back_from_its_multipart_body_as_the_api_decodes_it():
    image = digit_images(1)[0]
    body = png_payloads(1)[0]
    assert canvas_png(image) in body
    seen = sent_image("png", body, "mnist")
    assert seen.shape == (28, 28) and seen.dtype == np.float32
    assert seen.max() == pytest.approx(1.0, abs=0.05) and seen.min() >= 0


def test_bodies_whose_answers_cannot_be_told_apart_are_refused():
    goodness = np.arange(2 * 10 * 3, dtype=np.float32).reshape(2, 10, 3)
    same = {"goodness": np.stack([goodness[0], goodness[0] * (1 + 1e-6)])}
    with pytest.raises(ValueError, match="bodies 0 and 1"):
        check_separable([b"a", b"b"], same)
    check_separable([b"a", b"a"], same)  # equal bodies: swapping their answers changes nothing
    check_separable([b"a", b"b"], {"goodness": goodness})
