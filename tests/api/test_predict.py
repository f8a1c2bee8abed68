"""POST /runs/{id}/predict (JSON pixels or picture files) and GET /runs/{id}/model."""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image, ImageDraw

from ffcore.checkpoint import load_model, save_model
from ffcore.config import RunConfig
from ffcore.images import preprocess_digit
from ffcore.model import FFNetwork, predict
from tests.support.api import API
from tests.support.fakes import tiny_model_bytes
from tests.support.store import TestStore


def direct_prediction(model_bytes: bytes, image: np.ndarray):
    """What ffcore itself answers for the image, for comparison with the API."""
    model, _ = load_model(model_bytes)
    return predict(model, image[None])


def a_digit() -> np.ndarray:
    """A seven-like stroke, white on black, 28x28 in [0, 1]."""
    canvas = Image.new("L", (28, 28), 0)
    ImageDraw.Draw(canvas).line([(8, 7), (20, 7), (12, 22)], fill=255, width=2)
    return np.asarray(canvas, dtype=np.float32) / 255.0


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_json_pixels_get_the_models_prediction(
    client: TestClient, store: TestStore, finished_run: str
) -> None:
    image = a_digit()

    response = client.post(f"{API}/runs/{finished_run}/predict", json={"image": image.tolist()})

    assert response.status_code == 200, response.text
    body = response.json()
    expected = direct_prediction(store.load_model(finished_run), image)
    assert body["scan_label"] == int(expected.scan_label[0])
    np.testing.assert_allclose(body["goodness"], expected.goodness[0], rtol=1e-5)
    np.testing.assert_allclose(body["scan_scores"], expected.scan_scores[0], rtol=1e-5)
    np.testing.assert_allclose(body["head_probs"], expected.head_probs[0], rtol=1e-5, atol=1e-7)
    assert body["head_label"] == int(np.argmax(expected.head_probs[0]))
    assert np.array(body["goodness"]).shape == (10, 2)  # 10 labels x 2 layers
    assert body["scan_layers"] == [1] and body["thresholds"] == [40.0, 30.0]
    np.testing.assert_allclose(body["image"], image, atol=1e-4)  # used as given
    assert body["model_step"] == 2000
    assert body["dataset"] == "mnist" and body["classes"] == [str(d) for d in range(10)]
    assert (body["scan_class"], body["head_class"]) == (str(body["scan_label"]), str(body["head_label"]))


def test_a_fashion_mnist_model_answers_with_garment_names(client: TestClient, store: TestStore) -> None:
    config = RunConfig.from_preset("quick", dataset="fashion-mnist", hidden=[40, 30])
    model = FFNetwork(config)
    model.reset_parameters(torch.Generator().manual_seed(0))
    run = store.create_run(config, preset="quick")
    store.save_model(run.id, save_model(model, config))
    store.set_status(run.id, "succeeded", step=10, epoch=1, progress=1.0)
    body = client.post(f"{API}/runs/{run.id}/predict", json={"image": a_digit().tolist()}).json()
    assert body["dataset"] == "fashion-mnist" and body["classes"][9] == "Ankle boot"
    assert body["scan_class"] == body["classes"][body["scan_label"]]
    assert body["head_class"] == body["classes"][body["head_label"]]
    # A picture is prepared as Fashion-MNIST's were: the product trimmed and fitted into all 28 pixels.
    photo = Image.new("L", (300, 200), 235)
    ImageDraw.Draw(photo).rectangle([30, 40, 230, 140], fill=20)
    upload = client.post(
        f"{API}/runs/{run.id}/predict", files={"image": ("bag.png", png(photo), "image/png")}
    )
    seen = np.asarray(upload.json()["image"])
    assert upload.status_code == 200 and np.flatnonzero(seen.any(axis=0)).size == 28


def test_a_picture_is_preprocessed_as_mnist_was(
    client: TestClient, store: TestStore, finished_run: str
) -> None:
    # Dark ink on white paper, 300x200, off-centre: what a phone photo of a digit looks like.
    paper = Image.new("RGB", (300, 200), (250, 250, 245))
    ImageDraw.Draw(paper).line([(40, 30), (120, 30), (70, 170)], fill=(20, 20, 30), width=12)
    data = png(paper)

    response = client.post(
        f"{API}/runs/{finished_run}/predict", files={"image": ("seven.png", data, "image/png")}
    )

    assert response.status_code == 200, response.text
    seen = np.array(response.json()["image"], dtype=np.float32)
    expected_image = preprocess_digit(Image.open(io.BytesIO(data)))
    np.testing.assert_allclose(seen, expected_image, atol=1e-4)
    rows, cols = np.indices(seen.shape)
    assert abs((rows * seen).sum() / seen.sum() - 14) < 0.6  # centred by centre of mass
    expected = direct_prediction(store.load_model(finished_run), expected_image)
    assert response.json()["scan_label"] == int(expected.scan_label[0])


def test_a_drawn_canvas_and_a_jpeg_work_too(client: TestClient, finished_run: str) -> None:
    canvas = Image.new("RGBA", (280, 280), (0, 0, 0, 0))
    ImageDraw.Draw(canvas).line([(140, 40), (140, 240)], fill=(0, 0, 0, 255), width=20)
    drawn = client.post(
        f"{API}/runs/{finished_run}/predict", files={"image": ("c.png", png(canvas), "image/png")}
    )
    assert drawn.status_code == 200, drawn.text
    assert np.array(drawn.json()["image"])[:, 14].sum() > 15  # the stroke, as ink

    photo = Image.new("L", (120, 90), 230)
    ImageDraw.Draw(photo).ellipse([30, 10, 90, 80], outline=10, width=8)
    buffer = io.BytesIO()
    photo.save(buffer, format="JPEG", quality=80)
    jpeg = client.post(
        f"{API}/runs/{finished_run}/predict", files={"image": ("o.jpg", buffer.getvalue(), "image/jpeg")}
    )
    assert jpeg.status_code == 200, jpeg.text


def blank_png() -> bytes:
    return png(Image.new("RGBA", (200, 200), (0, 0, 0, 0)))


def huge_png() -> bytes:
    return png(Image.new("1", (6000, 6000), 0))  # a few kB, 36 million pixels


@pytest.mark.parametrize(
    ("kwargs", "status", "message"),
    [
        ({"files": {"image": ("blank.png", blank_png(), "image/png")}}, 422, "image: the image has no ink"),
        ({"json": {"image": [[0.0] * 28] * 28, "preprocess": True}}, 422, "image: the image has no ink"),
        ({"files": {"image": ("x.png", b"this is not a picture", "image/png")}}, 422, "not a readable image"),
        ({"files": {"image": ("t.png", png(Image.new("L", (64, 64), 9))[:60], "image/png")}}, 422, "damaged"),
        ({"files": {"image": ("big.png", huge_png(), "image/png")}}, 422, "6000x6000 pixels is too large"),
        ({"files": {"picture": ("a.png", blank_png(), "image/png")}}, 422, "field named 'image'"),
        ({"files": {"image": ("e.png", b"", "image/png")}}, 422, "the uploaded file is empty"),
        ({"json": {"image": [[0.5] * 28] * 27}}, 422, "image: List should have at least 28 items"),
        (
            {"json": {"image": [[1.5] + [0.0] * 27] * 28}},
            422,
            "image.0.0: Input should be less than or equal to 1",
        ),
        ({"json": {"image": [["dark"] * 28] * 28}}, 422, "image.0.0: Input should be a valid number"),
        ({"json": {"img": []}}, 422, "image: Field required"),
        (
            {"content": b'{"image": [[0.1', "headers": {"content-type": "application/json"}},
            422,
            "not valid JSON",
        ),
        ({"content": b"hello", "headers": {"content-type": "text/plain"}}, 415, "application/json"),
    ],
    ids=[
        "blank-canvas",
        "blank-json",
        "not-an-image",
        "truncated",
        "huge",
        "wrong-field",
        "empty-file",
        "27-rows",
        "out-of-range",
        "strings",
        "missing",
        "nan",
        "text",
    ],
)
def test_bad_digits_get_a_4xx_saying_what_is_wrong(
    client: TestClient, finished_run: str, kwargs: dict, status: int, message: str
) -> None:
    response = client.post(f"{API}/runs/{finished_run}/predict", **kwargs)

    assert response.status_code == status, response.text
    assert message in response.json()["detail"]


def test_nan_pixels_are_refused(client: TestClient, finished_run: str) -> None:
    row = ", ".join(["0.0"] * 27)
    rows = ", ".join([f"[NaN, {row}]"] * 28)
    response = client.post(
        f"{API}/runs/{finished_run}/predict",
        content=f'{{"image": [{rows}]}}'.encode(),
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 422
    assert response.json()["detail"].startswith("image.0.0: "), response.json()


def test_bodies_over_the_limit_get_413(client: TestClient, finished_run: str) -> None:
    # The fixture's settings allow 200,000 bytes.
    big = b"\x00" * 300_000
    declared = client.post(f"{API}/runs/{finished_run}/predict", files={"image": ("b.png", big, "image/png")})
    assert declared.status_code == 413
    assert "at most 200000 bytes" in declared.json()["detail"]

    def chunks():  # no Content-Length: the limit is enforced while reading
        for _ in range(30):
            yield b"\x00" * 10_000

    streamed = client.post(
        f"{API}/runs/{finished_run}/predict", content=chunks(), headers={"content-type": "application/json"}
    )
    assert streamed.status_code == 413
    assert client.get(f"{API}/runs/{finished_run}").status_code == 200  # nothing lost


def test_runs_without_a_model_get_409_and_unknown_runs_404(client: TestClient, store: TestStore) -> None:
    queued = store.create_run(RunConfig.from_preset("quick")).id
    digit = {"image": a_digit().tolist()}

    no_model = client.post(f"{API}/runs/{queued}/predict", json=digit)
    assert no_model.status_code == 409
    assert "has no model yet (status queued)" in no_model.json()["detail"]
    assert client.get(f"{API}/runs/{queued}/model").status_code == 409
    unknown = client.post(f"{API}/runs/unknown/predict", json=digit)
    assert unknown.status_code == 404 and unknown.json()["detail"] == "run 'unknown' not found"
    # An id of the right form that names no run, and one that could name another Redis key.
    assert client.post(f"{API}/runs/{'0' * 12}/predict", json=digit).status_code == 404
    colon = client.post(f"{API}/runs/{queued}:metrics/predict", json=digit)
    assert colon.status_code == 404 and colon.json()["detail"] == f"run '{queued}:metrics' not found"


def test_a_running_run_answers_from_its_latest_checkpoint(client: TestClient, store: TestStore) -> None:
    run_id = store.create_run(RunConfig.from_preset("quick")).id
    assert store.claim_run(run_id, "w1", ttl_s=30, device="cpu").outcome == "claimed"
    first, second = tiny_model_bytes(seed=1), tiny_model_bytes(seed=2)
    store.save_checkpoint(run_id, "w1", state=b"s1", model=first, step=1000, epoch=1)
    image = a_digit()

    before = client.post(f"{API}/runs/{run_id}/predict", json={"image": image.tolist()}).json()
    store.publish_progress(run_id, "w1", [{"kind": "train", "step": 1500}], step=1500)  # not a new model
    still = client.post(f"{API}/runs/{run_id}/predict", json={"image": image.tolist()}).json()
    store.save_checkpoint(run_id, "w1", state=b"s2", model=second, step=2000, epoch=2)
    after = client.post(f"{API}/runs/{run_id}/predict", json={"image": image.tolist()}).json()

    assert before["model_step"] == still["model_step"] == 1000 and after["model_step"] == 2000
    # The same model answers (equal up to float rounding: PyTorch's first call in a thread may
    # round differently from the later ones).
    np.testing.assert_allclose(still["goodness"], before["goodness"], rtol=1e-6)
    np.testing.assert_allclose(after["goodness"], direct_prediction(second, image).goodness[0], rtol=1e-5)
    assert after["goodness"] != before["goodness"]


def test_the_model_downloads_as_safetensors(client: TestClient, store: TestStore, finished_run: str) -> None:
    response = client.get(f"{API}/runs/{finished_run}/model")

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/octet-stream"
    assert f"ff-{finished_run}.safetensors" in response.headers["content-disposition"]
    assert response.content == store.load_model(finished_run)
    model, config = load_model(response.content)
    assert config.hidden == [40, 30]


def test_models_are_loaded_once_and_the_least_recently_used_leaves_first(
    redis_url: str, store: TestStore
) -> None:
    from api import deps
    from api.main import create_app
    from fflab.settings import Settings

    app = create_app(Settings(redis_url=redis_url, model_cache_size=2))
    app.dependency_overrides[deps.get_celery] = lambda: None
    runs = []
    for seed in range(3):
        run_id = store.create_run(RunConfig.from_preset("quick")).id
        store.save_model(run_id, tiny_model_bytes(seed=seed))
        store.set_status(run_id, "succeeded")
        runs.append(run_id)
    digit = {"image": a_digit().tolist()}
    with TestClient(app) as client:
        cache = app.state.model_cache

        def ask(run_id: str) -> None:
            assert client.post(f"{API}/runs/{run_id}/predict", json=digit).status_code == 200

        ask(runs[0])
        first_load = cache._entries[runs[0]]
        ask(runs[0])
        assert cache._entries[runs[0]] is first_load  # served from the cache, not loaded again
        ask(runs[1])
        ask(runs[0])  # runs[1] is now the least recently used
        ask(runs[2])
        assert set(cache._entries) == {runs[0], runs[2]}
        # Deleting a run drops its model.
        client.delete(f"{API}/runs/{runs[2]}")
        assert set(cache._entries) == {runs[0]}


def test_an_unreadable_stored_model_gets_a_409_not_a_500(client: TestClient, store: TestStore) -> None:
    run_id = store.create_run(RunConfig.from_preset("quick")).id
    store.save_model(run_id, b"certainly not safetensors")

    response = client.post(f"{API}/runs/{run_id}/predict", json={"image": a_digit().tolist()})

    assert response.status_code == 409
    assert "cannot be loaded" in response.json()["detail"]


def test_a_connection_redis_closed_while_idle_costs_no_prediction(
    client: TestClient, store: TestStore, finished_run: str
) -> None:
    # Redis closes connections idle for longer than its `timeout`; the next request must still work.
    image = {"image": a_digit().tolist()}
    assert client.post(f"{API}/runs/{finished_run}/predict", json=image).status_code == 200
    old = store.redis.config_get("timeout")["timeout"]
    store.redis.config_set("timeout", 1)
    try:
        time.sleep(3)  # Redis checks idle clients about every 100 ms; 3 s leaves no doubt
        assert client.post(f"{API}/runs/{finished_run}/predict", json=image).status_code == 200
    finally:
        store.redis.config_set("timeout", old)
