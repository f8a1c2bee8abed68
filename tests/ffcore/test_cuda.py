"""The GPU path against the CPU one: the same steps, checkpoints across devices, GPU-trained models.

Run on a machine with a CUDA GPU (`pytest -m cuda tests/ffcore`); skipped elsewhere.
"""

import numpy as np
import pytest
import torch

from ffcore import (
    DeviceError,
    RunConfig,
    Trainer,
    load_model,
    load_training_state,
    predict,
    resolve_device,
    save_model,
    save_training_state,
)
from ffcore.rng import exponential_race

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
    pytest.mark.timeout(300),
]

GPU = "cuda"


@pytest.fixture(autouse=True)
def full_float32_matmuls():
    # TF32 products (10 mantissa bits) would differ from the CPU's by far more than rounding.
    previous = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    yield
    torch.set_float32_matmul_precision(previous)


def all_params(trainer: Trainer) -> list[torch.nn.Parameter]:
    return [p for group in trainer.optimizer.param_groups for p in group["params"]]


@pytest.mark.parametrize("negatives", ["random", "hard"])
def test_a_few_steps_on_the_gpu_agree_with_the_cpu(synthetic, negatives):
    # SGD: Adam's first steps move every weight by about lr * sign(gradient), so a gradient within
    # rounding of zero could move the two devices' weights apart by 2 lr.
    config = RunConfig(device="cpu", hidden=[64, 32], batch_size=50, negatives=negatives, optimizer="sgd")
    on_cpu = Trainer(config, synthetic)
    on_gpu = Trainer(config.model_copy(update={"device": GPU}), synthetic)
    # The two devices' generators give different streams: both get the same batches and wrong labels.
    drawn = torch.Generator().manual_seed(1)
    for _ in range(5):
        index = torch.randperm(len(synthetic.train), generator=drawn)[:50]
        images, labels = synthetic.train.images[index], synthetic.train.labels[index]
        wrong = (labels + torch.randint(1, 10, labels.shape, generator=drawn)) % 10
        metrics = []
        for trainer in (on_cpu, on_gpu):
            trainer._negative_labels = lambda labels, probs, wrong=wrong: wrong.to(labels.device)
            device = trainer.device
            metrics.append(trainer.train_step(images.to(device), labels.to(device)).cpu())
        losses = [2, 6, 8, 9]  # the two layers' FF losses, the peer and the head loss
        torch.testing.assert_close(metrics[1][losses], metrics[0][losses], rtol=1e-4, atol=1e-5)
    for key, value in on_cpu.model.state_dict().items():
        torch.testing.assert_close(on_gpu.model.state_dict()[key].cpu(), value, rtol=1e-4, atol=1e-5)


def resume_config(device: str, optimizer: str) -> RunConfig:
    return RunConfig(
        device=device,
        hidden=[50, 40],
        epochs=2,
        batch_size=100,
        negatives="hard",
        optimizer=optimizer,
        jitter=1,
    )


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_a_state_saved_on_the_gpu_resumes_on_the_cpu_and_back(mnist_slice, optimizer, caplog):
    on_gpu = Trainer(resume_config(GPU, optimizer), mnist_slice)
    on_gpu.fit(max_steps=7)
    on_cpu = load_training_state(save_training_state(on_gpu), mnist_slice, device="cpu")
    assert not on_cpu.exact_resume and "not bit-exact" in caplog.text
    assert on_cpu.rng.device.type == "cpu" and on_cpu.step == 7
    for before, after in zip(all_params(on_gpu), all_params(on_cpu), strict=True):
        assert after.device.type == "cpu" and torch.equal(after, before.cpu())
        for key, value in on_gpu.optimizer.state[before].items():
            restored = on_cpu.optimizer.state[after][key]
            assert restored.device.type == "cpu" and torch.equal(restored, value.cpu()), key

    on_cpu.fit(max_steps=25)
    caplog.clear()
    back = load_training_state(save_training_state(on_cpu), mnist_slice, device=GPU)
    assert not back.exact_resume and "not bit-exact" in caplog.text
    for param in all_params(back):
        # Fused Adam and SGD need every buffer, Adam's step counter included, on the GPU.
        assert param.device.type == "cuda"
        assert all(value.device == param.device for value in back.optimizer.state[param].values())
    result = back.fit()
    assert result.steps == 40 and result.test_error_scan is not None


def test_a_gpu_run_resumed_on_the_gpu_continues_exactly(mnist_slice):
    straight = Trainer(resume_config(GPU, "adam"), mnist_slice)
    straight.fit()
    first = Trainer(resume_config(GPU, "adam"), mnist_slice)
    first.fit(max_steps=27)
    resumed = load_training_state(save_training_state(first), mnist_slice)
    assert resumed.exact_resume and resumed.rng.device.type == "cuda"
    assert resumed.fit().steps == straight.step == 40
    for key, value in straight.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[key], value)


def test_a_model_trained_on_the_gpu_loads_on_the_cpu(mnist_slice):
    trainer = Trainer(RunConfig(device=GPU, hidden=[40, 30], epochs=1), mnist_slice)
    trainer.fit(max_steps=10)
    model, config = load_model(save_model(trainer.model, trainer.config))
    assert config == trainer.config and next(model.parameters()).device.type == "cpu"
    digits = mnist_slice.test.images[:50].reshape(50, 28, 28)
    on_gpu, on_cpu = predict(trainer.model, digits), predict(model, digits)
    np.testing.assert_allclose(on_cpu.goodness, on_gpu.goodness, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(on_cpu.head_probs, on_gpu.head_probs, rtol=1e-4, atol=1e-5)


def test_hard_negatives_on_the_gpu_need_no_host_read(synthetic):
    trainer = Trainer(RunConfig(device=GPU, hidden=[20, 20], negatives="hard"), synthetic)
    labels = torch.arange(10, device=GPU).repeat(100)
    probs = torch.softmax(torch.randn(1000, 10, device=GPU), dim=1)
    torch.cuda.synchronize()
    previous = torch.cuda.get_sync_debug_mode()
    torch.cuda.set_sync_debug_mode("error")
    try:
        # The check has teeth: torch.multinomial reads its input's validity back to the host.
        with pytest.raises(RuntimeError, match="synchroniz"):
            torch.multinomial(probs, 1)
        drawn = trainer._negative_labels(labels, probs)
    finally:
        torch.cuda.set_sync_debug_mode(previous)
    assert drawn.device.type == "cuda" and not (drawn == labels).any()


def test_the_exponential_race_on_the_gpu_follows_the_weights():
    weights = torch.tensor([0.5, 0.0, 0.3, 0.2], device=GPU).repeat(100_000, 1)
    drawn = exponential_race(weights, torch.Generator(device=GPU).manual_seed(0))
    shares = torch.bincount(drawn, minlength=4).cpu().double() / len(drawn)
    # Four standard errors of a share at 100,000 draws: under 0.0064.
    assert shares[1] == 0 and torch.allclose(shares, torch.tensor([0.5, 0.0, 0.3, 0.2]).double(), atol=0.0064)


def test_a_gpu_index_past_the_last_is_a_device_error():
    count = torch.cuda.device_count()
    with pytest.raises(DeviceError, match=f"sees {count} CUDA GPU"):
        resolve_device(f"cuda:{count}")
