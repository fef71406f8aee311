"""BatchSampler: determinism, resume from state_dict, sharding over ranks, batch size checks."""

from __future__ import annotations

import io

import pytest
import torch

from workbench.core.data import BatchSampler, ImageDataset, load_dataset, to_model_range
from workbench.core.data.sampler import POINT_BLOCK, _derive_seed
from workbench.core.validation import ConfigError


def numbered_images(count: int) -> ImageDataset:
    """Images whose every pixel is the image's index, so a batch reveals which images it holds."""
    images = torch.arange(count, dtype=torch.uint8).view(count, 1, 1, 1).expand(count, 1, 2, 2).contiguous()
    return ImageDataset(images, None, None, "numbered")


def batch_ids(batch: torch.Tensor) -> list[int]:
    return torch.round((batch[:, 0, 0, 0] + 1) * 127.5).long().tolist()


def draw(sampler: BatchSampler, count: int) -> list[torch.Tensor]:
    return [sampler.next() for _ in range(count)]


def test_sampler_image_batches():
    sampler = BatchSampler(numbered_images(10), batch_size=3, seed=0)
    batch = sampler.next()
    assert batch.shape == (3, 1, 2, 2)
    assert batch.dtype == torch.float32
    ids = batch_ids(batch)
    assert torch.equal(batch, to_model_range(numbered_images(10).images[ids]))
    assert sampler.batches_per_epoch == 3


def test_sampler_epoch_is_permutation():
    sampler = BatchSampler(numbered_images(10), batch_size=3, seed=5)
    epoch0 = [i for batch in draw(sampler, 3) for i in batch_ids(batch)]
    assert sampler.epoch == 1
    epoch1 = [i for batch in draw(sampler, 3) for i in batch_ids(batch)]
    assert sampler.epoch == 2
    # drop_last: 9 of the 10 images per epoch, none repeated, a new order each epoch.
    assert len(set(epoch0)) == 9
    assert len(set(epoch1)) == 9
    assert epoch0 != epoch1
    expected = torch.randperm(10, generator=torch.Generator().manual_seed(5))[:9].tolist()
    assert epoch0 == expected


def test_sampler_deterministic():
    dataset = numbered_images(20)
    first = draw(BatchSampler(dataset, 4, seed=1), 12)
    second = draw(BatchSampler(dataset, 4, seed=1), 12)
    other = draw(BatchSampler(dataset, 4, seed=2), 12)
    assert all(torch.equal(a, b) for a, b in zip(first, second))
    assert not all(torch.equal(a, b) for a, b in zip(first, other))


@pytest.mark.parametrize("kind", ["images", "points"])
def test_sampler_resume(kind):
    dataset = numbered_images(20) if kind == "images" else load_dataset("ring8")
    uninterrupted = BatchSampler(dataset, 6, seed=3)
    expected = draw(uninterrupted, 9)

    interrupted = BatchSampler(dataset, 6, seed=3)
    draw(interrupted, 4)
    buffer = io.BytesIO()
    torch.save(interrupted.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)

    resumed = BatchSampler(dataset, 6, seed=99)
    resumed.load_state_dict(state)
    assert resumed.epoch == interrupted.epoch
    for index, batch in enumerate(draw(resumed, 5), start=4):
        assert torch.equal(batch, expected[index]), index


@pytest.mark.parametrize("world_size", [2, 3])
def test_sampler_sharding_equivalence(world_size):
    dataset = numbered_images(50)
    single = BatchSampler(dataset, 4 * world_size, seed=7)
    ranks = [BatchSampler(dataset, 4, seed=7, rank=rank, world_size=world_size) for rank in range(world_size)]
    # 50 // (4 * W) batches per epoch; 10 steps cross at least two epoch boundaries.
    for step in range(10):
        joined = torch.cat([sampler.next() for sampler in ranks])
        assert torch.equal(joined, single.next()), step
    assert {sampler.epoch for sampler in ranks} == {single.epoch}


def test_sampler_rank_slices():
    dataset = numbered_images(16)
    permutation = torch.randperm(16, generator=torch.Generator().manual_seed(0)).tolist()
    rank1 = BatchSampler(dataset, 2, seed=0, rank=1, world_size=2)
    # Global batch g covers positions [4g, 4g + 4); rank 1 takes the second half of it.
    assert batch_ids(rank1.next()) == permutation[2:4]
    assert batch_ids(rank1.next()) == permutation[6:8]


def test_sampler_resume_other_world_size():
    dataset = numbered_images(40)
    single = BatchSampler(dataset, 8, seed=4)
    expected = draw(single, 4)
    first = BatchSampler(dataset, 8, seed=4)
    draw(first, 2)
    ranks = [BatchSampler(dataset, 4, seed=0, rank=rank, world_size=2) for rank in range(2)]
    for sampler in ranks:
        sampler.load_state_dict(first.state_dict())
    for index in (2, 3):
        assert torch.equal(torch.cat([sampler.next() for sampler in ranks]), expected[index])


def test_sampler_points():
    ring = load_dataset("ring8")
    sampler = BatchSampler(ring, 32, seed=0)
    batch = sampler.next()
    assert batch.shape == (32, 2)
    assert batch.dtype == torch.float32
    assert not torch.equal(batch, sampler.next())
    assert sampler.epoch == 0
    assert sampler.batches_per_epoch is None
    rank0 = BatchSampler(ring, 32, seed=0, rank=0, world_size=2).next()
    rank1 = BatchSampler(ring, 32, seed=0, rank=1, world_size=2).next()
    assert not torch.equal(rank0, rank1)


@pytest.mark.parametrize("stop", [POINT_BLOCK - 2, POINT_BLOCK, POINT_BLOCK + 3])
def test_sampler_points_resume_around_reseeding(stop):
    # Point batches are drawn in blocks from one seeding. A resume inside a block, at its
    # start, or just after it must replay to the same place.
    ring = load_dataset("ring8")
    expected = draw(BatchSampler(ring, 5, seed=11), stop + 4)
    first = BatchSampler(ring, 5, seed=11)
    draw(first, stop)
    resumed = BatchSampler(ring, 5, seed=0)
    resumed.load_state_dict(first.state_dict())
    for index, batch in enumerate(draw(resumed, 4), start=stop):
        assert torch.equal(batch, expected[index]), index
    # Block 1 starts from its own seeding of (seed, rank 0, block 1).
    generator = torch.Generator().manual_seed(_derive_seed(11, 0, 1))
    assert torch.equal(expected[POINT_BLOCK], ring.sample(5, generator))


def test_sampler_too_few_images():
    with pytest.raises(ConfigError) as info:
        BatchSampler(numbered_images(5), batch_size=8, seed=0)
    assert info.value.field == "batch_size"
    assert "5 images but batch size 8" in str(info.value)
    assert "at most 5" in str(info.value)
    with pytest.raises(ConfigError, match="at most 2$"):
        BatchSampler(numbered_images(5), batch_size=3, seed=0, rank=1, world_size=2)
    assert BatchSampler(numbered_images(5), batch_size=5, seed=0).batches_per_epoch == 1


def test_sampler_bad_arguments():
    dataset = numbered_images(10)
    cases = [({"batch_size": 0}, "batch_size"), ({"rank": 2, "world_size": 2}, "rank"),
             ({"world_size": 0}, "world_size"), ({"seed": -1}, "seed")]
    for overrides, field in cases:
        arguments = {"batch_size": 2, "seed": 0, **overrides}
        with pytest.raises(ConfigError) as info:
            BatchSampler(dataset, **arguments)
        assert info.value.field == field


def test_sampler_state_mismatch():
    state = BatchSampler(numbered_images(10), 2, seed=0).state_dict()
    with pytest.raises(ConfigError, match="for 10 images, but this dataset has 12"):
        BatchSampler(numbered_images(12), 2, seed=0).load_state_dict(state)
    with pytest.raises(ConfigError, match="for images data"):
        BatchSampler(load_dataset("ring8"), 2, seed=0).load_state_dict(state)
