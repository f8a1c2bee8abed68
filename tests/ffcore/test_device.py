"""resolve_device: the one place that turns 'auto', 'cpu' or 'cuda[:N]' into a torch.device."""

import pytest
import torch

from ffcore import DeviceError, RunConfig, Trainer, resolve_device

needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
needs_no_gpu = pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a CUDA GPU")


def test_cpu_is_the_cpu():
    assert resolve_device("cpu") == torch.device("cpu")


def test_auto_takes_the_gpu_when_there_is_one():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected


@pytest.mark.parametrize("name", ["tpu", "gpu", "cuda:x", "CPU", ""])
def test_an_unknown_device_is_a_device_error(name):
    with pytest.raises(DeviceError, match="unknown device"):
        resolve_device(name)


def test_a_device_error_is_a_value_error():
    # Callers that already handle bad input as ValueError need no new except clause.
    assert issubclass(DeviceError, ValueError)


@needs_no_gpu
@pytest.mark.parametrize("name", ["cuda", "cuda:0"])
def test_cuda_without_a_gpu_says_so(name):
    with pytest.raises(DeviceError, match=f"device '{name}' was asked for, but PyTorch sees no CUDA GPU"):
        resolve_device(name)


@needs_no_gpu
def test_the_trainer_refuses_cuda_without_a_gpu(synthetic):
    with pytest.raises(DeviceError, match="no CUDA GPU"):
        Trainer(RunConfig(hidden=[10, 10], device="cuda"), synthetic)


@needs_gpu
def test_cuda_and_its_indices_resolve_on_a_gpu_machine():
    assert resolve_device("cuda").type == "cuda"
    assert resolve_device("cuda:0") == torch.device("cuda:0")
    count = torch.cuda.device_count()
    with pytest.raises(DeviceError, match=f"sees {count} CUDA GPU"):
        resolve_device(f"cuda:{count}")
