import gzip
import shutil
from pathlib import Path

import pytest
import torch

from ffcore import DataError, Dataset, RunConfig, load_dataset


def test_real_mnist_loads_with_the_reference_split(mnist):
    assert (len(mnist.train), len(mnist.val), len(mnist.test)) == (50_000, 10_000, 10_000)
    assert mnist.train.images.shape == (50_000, 784) and mnist.train.images.dtype == torch.float32
    assert torch.equal(torch.bincount(mnist.test.labels), torch.bincount(mnist.test.labels, minlength=10))
    # raw intensities in [0, 1], as the references feed them: blank background 0, full ink 1
    everything = torch.cat([mnist.train.images, mnist.val.images])
    assert everything.min().item() == 0.0 and everything.max().item() == 1.0
    assert abs(everything.mean().item() - 0.1307) < 0.001  # MNIST's published mean intensity


def test_validation_none_trains_on_all_sixty_thousand(mnist_dir):
    data = load_dataset(RunConfig(data_dir=mnist_dir, validation="none"))
    assert len(data.train) == 60_000 and data.val is None


def test_missing_directory_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_dataset(RunConfig(data_dir=str(tmp_path / "nope")))


def test_folder_without_mnist_says_what_to_put_there(tmp_path):
    with pytest.raises(DataError, match="MNIST/raw"):
        load_dataset(RunConfig(data_dir=str(tmp_path)))


def copy_raw(mnist_dir: str, target: Path) -> Path:
    raw = target / "MNIST" / "raw"
    shutil.copytree(Path(mnist_dir) / "MNIST" / "raw", raw)
    return raw


def test_truncated_file_is_reported_as_corrupt(mnist_dir, tmp_path):
    raw = copy_raw(mnist_dir, tmp_path)
    path = raw / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DataError, match="truncated or corrupt"):
        load_dataset(RunConfig(data_dir=str(tmp_path)))


def test_wrong_file_is_reported(mnist_dir, tmp_path):
    raw = copy_raw(mnist_dir, tmp_path)
    shutil.copy(raw / "train-labels-idx1-ubyte", raw / "train-images-idx3-ubyte")
    with pytest.raises(DataError, match="not an IDX file"):
        load_dataset(RunConfig(data_dir=str(tmp_path)))


def test_gzipped_files_in_a_flat_folder_are_found(mnist_dir, tmp_path):
    # The layout of Debian's dataset-fashion-mnist package: *.gz files directly in the folder.
    for path in (Path(mnist_dir) / "MNIST" / "raw").iterdir():
        with open(path, "rb") as src, gzip.open(tmp_path / f"{path.name}.gz", "wb") as dst:
            shutil.copyfileobj(src, dst)
    data = load_dataset(RunConfig(data_dir=str(tmp_path), validation="none"))
    assert len(data.train) == 60_000 and len(data.test) == 10_000


def test_a_split_by_name(synthetic):
    assert synthetic.split("test") is synthetic.test and synthetic.split("val") is synthetic.val
    with pytest.raises(ValueError, match="unknown split 'dev'"):
        synthetic.split("dev")
    all_60k = Dataset(synthetic.name, synthetic.train, None, synthetic.test)  # validation="none"
    with pytest.raises(ValueError, match="no validation split"):
        all_60k.split("val")
