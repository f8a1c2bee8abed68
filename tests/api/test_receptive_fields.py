"""GET /runs/{id}/receptive-fields(.png): the first layer's input weights, as numbers and as a picture."""

from __future__ import annotations

import io

import numpy as np
from fastapi.testclient import TestClient
from PIL import Image

from ffcore.checkpoint import load_model
from ffcore.config import RunConfig
from tests.support.api import API
from tests.support.store import TestStore


def test_the_fields_are_the_stored_models_first_layer_weights(
    client: TestClient, store: TestStore, finished_run: str
) -> None:
    model, _ = load_model(store.load_model(finished_run))
    weight = model.layers[0].weight.detach().numpy()  # (40 units, 784)
    body = client.get(f"{API}/runs/{finished_run}/receptive-fields", params={"count": 5}).json()
    assert len(body["units"]) == 5 and len(set(body["units"])) == 5
    norms = np.linalg.norm(weight, axis=1)
    assert body["units"][0] == int(norms.argmax()), "the units with the largest weights come first"
    first = np.asarray(body["weights"][0])
    assert first.shape == (28, 28)
    np.testing.assert_allclose(first.reshape(-1), weight[body["units"][0]], atol=1e-6)
    np.testing.assert_allclose(body["label_weights"][2], weight[body["units"][2], :10], atol=1e-6)


def test_the_png_grid_has_one_tile_per_unit(client: TestClient, finished_run: str) -> None:
    response = client.get(f"{API}/runs/{finished_run}/receptive-fields.png", params={"count": 9, "scale": 2})
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    image = Image.open(io.BytesIO(response.content))
    assert image.size == (3 * (56 + 2) + 2, 3 * (56 + 2) + 2)  # 3 x 3 tiles of 28 x 2 pixels, gaps of 2


def test_no_model_unknown_run_and_bad_counts_get_a_clear_4xx(client: TestClient, store: TestStore) -> None:
    queued = store.create_run(RunConfig.from_preset("quick"), preset="quick").id
    no_model = client.get(f"{API}/runs/{queued}/receptive-fields")
    assert no_model.status_code == 409 and "has no model yet" in no_model.json()["detail"]
    assert client.get(f"{API}/runs/0123456789ab/receptive-fields.png").status_code == 404
    assert client.get(f"{API}/runs/x:metrics/receptive-fields").status_code == 404
    too_many = client.get(f"{API}/runs/{queued}/receptive-fields", params={"count": 5000})
    assert too_many.status_code == 422 and "count" in too_many.json()["detail"]
