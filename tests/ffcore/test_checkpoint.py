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
    trainer = Trainer(RunConfig(device="cpu", hidden=[40, 30], epochs=1), mnist_slice)
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


def with_changes(data: bytes, tensors: dict | None = None, metadata: dict | None = None, drop=()) -> bytes:
    """A training state rewritten: tensors and metadata fields replaced or added, metadata fields dropped."""
    from safetensors.torch import load, save

    from ffcore.checkpoint import read_metadata

    fields = {k: v for k, v in (read_metadata(data) | (metadata or {})).items() if k not in drop}
    return save(load(data) | (tensors or {}), metadata=fields)


def resume_config(**fields) -> RunConfig:
    return RunConfig(device="cpu", hidden=[50, 40], epochs=2, batch_size=100, negatives="hard", **fields)


def test_a_training_state_records_its_generators_device(mnist_slice):
    from ffcore.checkpoint import read_metadata

    assert read_metadata(save_training_state(trained(mnist_slice)))["rng_device"] == "cpu"


def test_a_state_from_before_the_device_field_still_resumes_exactly(mnist_slice):
    straight = Trainer(resume_config(jitter=1), mnist_slice)
    straight.fit()
    first = Trainer(resume_config(jitter=1), mnist_slice)
    first.fit(max_steps=27)
    old_state = with_changes(save_training_state(first), drop=("rng_device",))
    resumed = load_training_state(old_state, mnist_slice)
    assert resumed.exact_resume
    resumed.fit()
    for key, value in straight.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[key], value), key


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_a_state_from_a_gpu_generator_resumes_on_the_cpu_reseeded(mnist_slice, optimizer, caplog):
    # What a GPU worker's state looks like to a CPU worker: a 16-byte Philox state, recorded as cuda.
    from ffcore.rng import reseed_value

    config = resume_config(jitter=1, optimizer=optimizer, seed=4)
    first = Trainer(config, mnist_slice)
    first.fit(max_steps=27)
    gpu_generator = {"rng": torch.arange(16, dtype=torch.uint8)}
    state = with_changes(save_training_state(first), gpu_generator, {"rng_device": "cuda"})

    resumed = load_training_state(state, mnist_slice)
    assert not resumed.exact_resume
    assert "resume at step 27 is not bit-exact" in caplog.text and "saved on cuda" in caplog.text
    expected = torch.Generator().manual_seed(reseed_value(4, 27)).get_state()
    assert torch.equal(resumed.rng.get_state(), expected)
    # Everything else is as saved: weights, optimizer buffers (on their parameters' device), position.
    assert (resumed.epoch, resumed.step, resumed.next_batch) == (first.epoch, first.step, first.next_batch)
    assert torch.equal(resumed.order, first.order)
    first_params = [p for g in first.optimizer.param_groups for p in g["params"]]
    resumed_params = [p for g in resumed.optimizer.param_groups for p in g["params"]]
    for before, after in zip(first_params, resumed_params, strict=True):
        assert torch.equal(after, before)
        assert first.optimizer.state[before].keys() == resumed.optimizer.state[after].keys()
        for key, value in first.optimizer.state[before].items():
            restored = resumed.optimizer.state[after][key]
            assert torch.equal(restored, value) and restored.device == after.device, key

    # The reseeded run is deterministic (two workers taking it up train the same weights) and it
    # really draws from the new stream (not the old one's data order, negatives and jitter).
    again = load_training_state(state, mnist_slice)
    exact = load_training_state(save_training_state(first), mnist_slice)
    for trainer in (resumed, again, exact):
        assert trainer.fit().steps == 40
    weights = [t.model.layers[1].weight for t in (resumed, again, exact)]
    assert torch.equal(weights[0], weights[1]) and not torch.equal(weights[0], weights[2])


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_the_state_size_estimate_matches_a_real_state(mnist_slice, optimizer):
    from ffcore.checkpoint import training_state_bytes

    config = RunConfig.from_preset("quick", hidden=[300, 200], optimizer=optimizer, device="cpu")
    trainer = Trainer(config, mnist_slice)
    trainer.fit(max_steps=1)
    actual = len(save_training_state(trainer))
    # The estimate counts a full 60k data order; this slice's is shorter.
    expected = training_state_bytes(config) - 60_000 * 8 + trainer.order.numel() * 8
    assert abs(actual - expected) < 20_000, (actual, expected)  # the header and metadata aside
    big = RunConfig.from_preset("reference", hidden=[4096] * 8)
    assert training_state_bytes(big) > 900e6  # 120M weights, each with a momentum buffer
