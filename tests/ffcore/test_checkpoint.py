import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from ffcore import (
    RunConfig,
    Trainer,
    load_model,
    load_model_dir,
    load_training_state,
    predict,
    save_model,
    save_model_dir,
    save_training_state,
)


def trained(mnist_slice) -> Trainer:
    trainer = Trainer(RunConfig(hidden=[40, 30], epochs=1), mnist_slice)
    trainer.fit(max_steps=10)
    return trainer


def test_model_round_trip_predicts_the_same(mnist_slice, tmp_path):
    trainer = trained(mnist_slice)
    model, config = load_model(save_model(trainer.model, trainer.config))
    assert config == trainer.config
    pixels = np.random.default_rng(0).random((5, 28, 28), dtype=np.float32)
    before, after = predict(trainer.model, pixels), predict(model, pixels)
    np.testing.assert_array_equal(before.goodness, after.goodness)
    np.testing.assert_array_equal(before.head_probs, after.head_probs)

    save_model_dir(tmp_path, trainer.model, trainer.config)
    assert RunConfig.from_json((tmp_path / "config.json").read_text()) == trainer.config
    model, _ = load_model_dir(tmp_path)
    assert torch.equal(model.layers[1].weight, trainer.model.layers[1].weight.cpu())


def test_loading_never_unpickles(tmp_path):
    class Boom:
        def __reduce__(self):
            return (pytest.fail, ("a pickle was loaded",))

    with pytest.raises(ValueError, match="not a safetensors file|not an ffcore model"):
        load_model(pickle.dumps(Boom()))
    torch.save({"weight": torch.zeros(2)}, tmp_path / "model.safetensors")  # a torch pickle in disguise
    with pytest.raises(ValueError):
        load_model_dir(tmp_path)


def test_training_state_is_not_a_model(mnist_slice):
    trainer = trained(mnist_slice)
    with pytest.raises(ValueError, match="not an ffcore model"):
        load_model(save_training_state(trainer))


def test_models_and_states_from_the_standardised_input_days_are_refused(mnist_slice):
    from safetensors.torch import load, save

    from ffcore.checkpoint import read_metadata

    def with_format(data: bytes, format_: str) -> bytes:
        return save(load(data), metadata=read_metadata(data) | {"format": format_})

    trainer = trained(mnist_slice)
    with pytest.raises(ValueError, match="expects standardised pixels"):
        load_model(with_format(save_model(trainer.model, trainer.config), "ffcore-model/1"))
    with pytest.raises(ValueError, match="expects standardised pixels"):
        load_training_state(with_format(save_training_state(trainer), "ffcore-training-state/1"), mnist_slice)


def test_missing_model_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        load_model_dir(tmp_path / "nowhere")


def test_a_write_cut_short_leaves_the_previous_file_whole(tmp_path, monkeypatch):
    from ffcore.checkpoint import write_atomically

    target = tmp_path / "state.safetensors"
    write_atomically(target, b"old state")
    real_write = Path.write_bytes

    def killed_mid_write(self, data):
        real_write(self, data[:3])
        raise KeyboardInterrupt  # the run is stopped while the file is half written

    monkeypatch.setattr(Path, "write_bytes", killed_mid_write)
    with pytest.raises(KeyboardInterrupt):
        write_atomically(target, b"new state")
    monkeypatch.undo()
    assert target.read_bytes() == b"old state"
    write_atomically(target, b"new state")
    assert target.read_bytes() == b"new state"
