"""Training on a tiny in-memory set: files written atomically, the model card, resume
from the checkpoint, the training subset, evaluation."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch
from torch import nn

from pixelprior.data import ImageSet
from pixelprior.models import SqueezeNetCifar
from pixelprior.models import train as training
from pixelprior.models.train import (
    TrainConfig,
    _load_training_set,
    evaluate,
    train_cifar10,
    write_weights,
)

WEIGHTS = "squeezenet1_1-cifar10.pt"


def image_set(count: int, seed: int = 0, size: int = 16) -> ImageSet:
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (count, 3, size, size), generator=generator,
                           dtype=torch.uint8)
    labels = torch.arange(count) % 10
    return ImageSet(images, labels, tuple(f"c{i}" for i in range(10)), f"memory{seed}")


@pytest.fixture(autouse=True)
def torch_threads():
    """Training sets torch's thread count (``threads``); put it back afterwards."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def tiny_data(monkeypatch):
    """16 training images and 2 test images (16x16: the architecture takes any size
    its pools allow) in memory; records what was loaded."""
    loaded = {}

    def jpeg(split="train", path=None, use_cache=True):
        loaded["split"], loaded["path"] = split, path
        return image_set(16)

    def test_set(path=None, download=True):
        loaded["download"] = download
        return image_set(2, seed=1)

    monkeypatch.setattr(training, "load_cifar10_jpeg", jpeg)
    monkeypatch.setattr(training, "load_cifar10_test", test_set)
    return loaded


def tiny_config(tmp_path, **values) -> TrainConfig:
    settings = dict(epochs=1, batch_size=4, limit=4, lr=0.05, warmup_epochs=0.5,
                    out_dir=str(tmp_path / "out"), data="archive.tar.xz", threads=1)
    settings.update(values)
    return TrainConfig(**settings)


def quiet(messages=None):
    return (lambda m: None) if messages is None else messages.append


def test_the_training_subset_is_limit_images_chosen_by_the_seed(tiny_data, tmp_path):
    config = tiny_config(tmp_path, limit=5, seed=3)
    subset = _load_training_set(config)
    order = torch.randperm(16, generator=torch.Generator().manual_seed(3))[:5]
    assert len(subset) == 5
    assert torch.equal(subset.images, image_set(16).images[order])
    assert torch.equal(subset.official_indices, order)
    assert tiny_data == {"split": "train", "path": "archive.tar.xz"}


def test_without_limit_the_whole_training_set(tiny_data, tmp_path):
    assert len(_load_training_set(tiny_config(tmp_path, limit=None))) == 16


def test_one_epoch_writes_weights_card_and_checkpoint(tiny_data, tmp_path):
    config = tiny_config(tmp_path)
    card = train_cifar10(config, log=quiet(), command="pixelprior train cifar10 --tiny")
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == sorted([
        ".lock", "checkpoint.pt", WEIGHTS, "squeezenet1_1-cifar10.json"])  # nothing temporary
    # left (the lock file stays, unlocked, as in run folders)
    assert json.loads((out / "squeezenet1_1-cifar10.json").read_text()) == card
    assert card["epochs"] == 1 and card["config"]["limit"] == 4
    assert [h["epoch"] for h in card["history"]] == [1]
    assert card["command"] == "pixelprior train cifar10 --tiny"
    assert card["evaluation_data"] == "exact CIFAR-10 test images 0..1 (2 images)"
    assert tiny_data["download"] is False  # training never downloads the test set


def test_the_card_sha256_is_the_weights_file(tiny_data, tmp_path):
    card = train_cifar10(tiny_config(tmp_path), log=quiet())
    data = (tmp_path / "out" / WEIGHTS).read_bytes()
    assert card["sha256"] == hashlib.sha256(data).hexdigest()


def test_the_weights_load_and_give_the_card_accuracy(tiny_data, tmp_path):
    card = train_cifar10(tiny_config(tmp_path), log=quiet())
    state = torch.load(tmp_path / "out" / WEIGHTS, map_location="cpu", weights_only=True)
    model = SqueezeNetCifar()
    model.load_state_dict(state)  # state_dict only, every key of the architecture
    assert all(v.is_contiguous() for v in state.values())
    assert card["test_accuracy"] == evaluate(model, image_set(2, seed=1))
    assert card["history"][0]["test_accuracy"] == card["test_accuracy"]


def test_without_a_test_set_training_goes_on_and_says_so(tiny_data, tmp_path, monkeypatch):
    def missing(path=None, download=True):
        raise FileNotFoundError("no test_batch here")

    monkeypatch.setattr(training, "load_cifar10_test", missing)
    messages: list[str] = []
    card = train_cifar10(tiny_config(tmp_path), log=quiet(messages))
    assert any("no exact test set for evaluation (no test_batch here)" in m for m in messages)
    assert card["evaluation_data"] is None
    assert card["test_accuracy"] is None  # null in the JSON card (NaN is no JSON)
    json.loads((tmp_path / "out" / "squeezenet1_1-cifar10.json").read_text(),
               parse_constant=lambda name: pytest.fail(f"{name} in the card"))


def epoch_records(messages):
    return [json.loads(m) for m in messages if m.startswith("{")]


def test_an_interrupted_run_resumes_from_its_checkpoint(tiny_data, tmp_path):
    config = tiny_config(tmp_path, epochs=2)
    first: list[str] = []

    def stop_in_epoch_two(message):
        first.append(message)
        if message.startswith("{") and json.loads(message)["epoch"] == 2:
            raise KeyboardInterrupt  # killed during epoch 2, before its checkpoint

    with pytest.raises(KeyboardInterrupt):
        train_cifar10(config, log=stop_in_epoch_two)
    out = tmp_path / "out"
    assert not (out / WEIGHTS).exists()
    saved = torch.load(out / "checkpoint.pt", map_location="cpu", weights_only=False)
    assert saved["epoch"] == 1
    second: list[str] = []
    card = train_cifar10(config, log=quiet(second))
    assert "resuming from epoch 1" in second
    assert [r["epoch"] for r in epoch_records(second)] == [2]  # epoch 1 not trained again
    assert card["history"][0] == epoch_records(first)[0]  # epoch 1's record, kept as it was
    assert [h["epoch"] for h in card["history"]] == [1, 2]


def test_a_resumed_run_ends_where_an_uninterrupted_one_does(tiny_data, tmp_path):
    straight = train_cifar10(tiny_config(tmp_path / "a", epochs=2), log=quiet())
    config = tiny_config(tmp_path / "b", epochs=2)

    def stop_in_epoch_two(message):
        if message.startswith("{") and json.loads(message)["epoch"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_cifar10(config, log=stop_in_epoch_two)
    resumed = train_cifar10(config, log=quiet())
    a = torch.load(tmp_path / "a" / "out" / WEIGHTS, weights_only=True)
    b = torch.load(tmp_path / "b" / "out" / WEIGHTS, weights_only=True)
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6)
    assert [h["loss"] for h in resumed["history"]] == pytest.approx(
        [h["loss"] for h in straight["history"]], rel=1e-5)


def test_a_finished_run_resumes_without_training(tiny_data, tmp_path):
    config = tiny_config(tmp_path)
    first = train_cifar10(config, log=quiet())
    messages: list[str] = []
    again = train_cifar10(config, log=quiet(messages))
    assert "resuming from epoch 1" in messages and epoch_records(messages) == []
    assert again["history"] == first["history"] and again["sha256"] == first["sha256"]


def test_a_checkpoint_of_another_config_is_refused(tiny_data, tmp_path):
    train_cifar10(tiny_config(tmp_path, epochs=1), log=quiet())
    checkpoint = (tmp_path / "out" / "checkpoint.pt").read_bytes()
    with pytest.raises(ValueError, match=r"was written with other settings \(epochs\)"):
        train_cifar10(tiny_config(tmp_path, epochs=2), log=quiet())
    assert (tmp_path / "out" / "checkpoint.pt").read_bytes() == checkpoint


def test_the_same_folder_spelled_otherwise_resumes(tiny_data, tmp_path, monkeypatch):
    train_cifar10(tiny_config(tmp_path, epochs=1), log=quiet())
    monkeypatch.chdir(tmp_path)
    messages: list[str] = []
    train_cifar10(tiny_config(tmp_path, epochs=1, out_dir="out"), log=quiet(messages))
    assert not epoch_records(messages)  # resumed: finished, nothing trained again


@pytest.mark.parametrize("content", [b"garbage\n", b"PK\x03\x04 truncated"])
def test_a_damaged_checkpoint_is_one_line_not_an_internal_error(tiny_data, tmp_path,
                                                                 content):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "checkpoint.pt").write_bytes(content)
    with pytest.raises(ValueError, match="not a readable checkpoint of this command"):
        train_cifar10(tiny_config(tmp_path), log=quiet())


def test_a_limit_past_the_training_set_is_refused_and_the_card_counts_the_images(
        tiny_data, tmp_path):
    with pytest.raises(ValueError, match="limit 17 is more than the 16 training images"):
        train_cifar10(tiny_config(tmp_path, limit=17), log=quiet())
    assert not (tmp_path / "out").exists()
    card = train_cifar10(tiny_config(tmp_path, limit=4), log=quiet())
    assert "4 images, a random subset of seed 0" in card["training_data"]


def test_an_archive_given_that_is_not_there_is_never_replaced_by_another(tmp_path):
    from pixelprior.data import DataNotFoundError
    from pixelprior.data.cifar10 import find_jpeg_archive

    with pytest.raises(DataNotFoundError, match="is not a file"):
        find_jpeg_archive(tmp_path / "missing.tar.xz")
    with pytest.raises(DataNotFoundError, match="is not a file"):
        find_jpeg_archive(tmp_path)  # a folder


def test_a_failed_weights_write_leaves_the_earlier_files_whole(tiny_data, tmp_path,
                                                               monkeypatch):
    config = tiny_config(tmp_path)
    card = train_cifar10(config, log=quiet())
    out = tmp_path / "out"
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def broken_save(obj, f, *args, **kwargs):
        f.write(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        write_weights(SqueezeNetCifar(), config, card["history"], None, out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # no .tmp, no change


class Brightness(nn.Module):
    """Class 1 for images brighter than mid-grey, else class 0."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x):
        score = self.scale * (x.mean((1, 2, 3)) - 0.5)
        return torch.stack([-score, score], 1)


def two_images(labels):
    images = torch.stack([torch.full((3, 4, 4), 230, dtype=torch.uint8),
                          torch.full((3, 4, 4), 20, dtype=torch.uint8)])
    return ImageSet(images, torch.tensor(labels), ("dark", "bright"), "two")


@pytest.mark.parametrize(("labels", "accuracy"), [([1, 0], 1.0), ([1, 1], 0.5),
                                                  ([0, 1], 0.0)])
def test_evaluate_on_two_images(labels, accuracy):
    model = Brightness().train()
    assert evaluate(model, two_images(labels)) == accuracy
    assert evaluate(model, two_images(labels), batch_size=1) == accuracy
    assert not model.training  # evaluated in eval mode


def test_evaluate_an_empty_set_is_zero():
    empty = ImageSet(torch.zeros(0, 3, 4, 4, dtype=torch.uint8),
                     torch.zeros(0, dtype=torch.long), ("a",), "none")
    assert evaluate(Brightness(), empty) == 0.0


@pytest.mark.parametrize(("settings", "message"), [
    ({"epochs": 0}, "epochs must be >= 1"),
    ({"batch_size": 0}, "batch_size must be >= 1"),
    ({"lr": float("nan")}, "lr must be a finite number > 0"),
    ({"lr": -1.0}, "lr must be a finite number > 0"),
    ({"limit": 0}, "limit must be >= 1"),
    ({"weight_decay": -1.0}, "weight_decay must be a finite number >= 0"),
    ({"epochs": 2, "warmup_epochs": 2.0}, r"warmup_epochs \(2.0\) must be fewer than epochs"),
])
def test_settings_that_cannot_train_are_refused_before_anything_is_written(settings, message,
                                                                           tmp_path):
    from pixelprior.models.train import TrainConfig, TrainConfigError

    with pytest.raises(TrainConfigError, match=message):
        TrainConfig(out_dir=str(tmp_path / "t"), **settings)
    assert not (tmp_path / "t").exists()


@pytest.mark.parametrize(("epochs", "warmup"), [(1, 0.2), (5, 1.0), (10, 2.0), (30, 2.0)])
def test_the_default_warm_up_leaves_a_short_run_room_to_decay(epochs, warmup):
    from pixelprior.models.train import TrainConfig, default_warmup, learning_rate

    config = TrainConfig(epochs=epochs)
    assert config.warmup_epochs is None and default_warmup(epochs) == warmup
    steps = 100 * epochs
    last = learning_rate(steps - 1, steps, int(warmup * 100), config.lr)
    assert last < 0.01 * config.lr


def test_a_run_begun_with_the_old_default_warm_up_resumes_with_it(tiny_data, tmp_path):
    """A checkpoint of before the short-run default recorded 2.0 for a 3-epoch run: the
    same command (no warm-up set) resumes it as it began; a warm-up set otherwise is
    refused; a new run records the one it used."""
    from pixelprior.models.train import TrainConfigError

    train_cifar10(tiny_config(tmp_path), log=quiet())  # one epoch of a run begun before:
    path = tmp_path / "out" / "checkpoint.pt"
    state = torch.load(path, weights_only=True)
    state["config"].update(epochs=3, warmup_epochs=2.0)  # as the 3-epoch run recorded it
    torch.save(state, path)
    card = train_cifar10(tiny_config(tmp_path, epochs=3, warmup_epochs=None), log=quiet())
    assert card["config"]["warmup_epochs"] == 2.0 and card["epochs"] == 3
    with pytest.raises(TrainConfigError, match="warmup_epochs"):
        train_cifar10(tiny_config(tmp_path, epochs=3, warmup_epochs=0.5), log=quiet())
    fresh = train_cifar10(tiny_config(tmp_path / "new", epochs=2, warmup_epochs=None),
                          log=quiet())
    assert fresh["config"]["warmup_epochs"] == 0.4


def test_a_second_run_on_the_folder_in_use_stops_naming_the_first(tiny_data, tmp_path):
    from pixelprior._io import RunLock, RunLockedError

    config = tiny_config(tmp_path)
    with RunLock(config.out_dir, command="pixelprior train cifar10 (the first)"):
        with pytest.raises(RunLockedError, match="the first"):
            train_cifar10(config, log=quiet())
    assert not (tmp_path / "out" / "checkpoint.pt").exists()
    train_cifar10(config, log=quiet())  # free again: it trains
    assert (tmp_path / "out" / "checkpoint.pt").exists()
