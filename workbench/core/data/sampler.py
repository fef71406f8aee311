"""Training batches from a PointMixture or an ImageDataset, resumable and shardable."""

from __future__ import annotations

import numpy as np
import torch

from workbench.core.data.dataset import ImageDataset, to_model_range
from workbench.core.data.toy import PointMixture
from workbench.core.validation import ConfigError, coerce_int

_SEED_MODULUS = 2**64  # torch.Generator.manual_seed accepts seeds below this
# Point batches drawn from one seeding. A resume replays at most this many draws less one,
# 3-5 ms for 256 points, so the block trades that for seeding cost per batch.
POINT_BLOCK = 256


class BatchSampler:
    """Yields training batches as float32 CPU tensors in the model range.

    Images: each epoch ``e`` has its own permutation of the N images, drawn with
    ``torch.randperm`` from a generator seeded with ``seed + e``, the same on
    every rank (as torch's DistributedSampler does). With world size W and
    per-rank batch B, global batch g of an epoch covers permutation positions
    [g*W*B, (g+1)*W*B), and rank r takes the slice [r*B, (r+1)*B) of it. So the
    concatenation of the ranks' batches, in rank order, equals the batch of a
    single sampler with W=1 and batch size W*B. An epoch has N // (W*B) batches
    and the remainder of the permutation is dropped.

    Points: batches come in blocks of ``POINT_BLOCK`` batches. Block ``k`` of
    rank ``r`` draws its batches one after another from one generator seeded
    from (seed, r, k) with numpy's SeedSequence. Seeding once per block rather
    than once per batch keeps the sampler's cost near that of the draw itself
    (seeding cost about as much as a 256-point draw), and a resume at batch ``p``
    reseeds block ``p // POINT_BLOCK`` and draws and discards the ``p %
    POINT_BLOCK`` batches before it. Ranks draw different points, and a
    2-process run does not reproduce the points of a 1-process run; only images
    have that equivalence.

    The state is the same on every rank (seed, epoch, position), so a
    checkpoint saved by rank 0 resumes every rank.

    Attributes
    ----------
    epoch : int
        Epoch of the next image batch; always 0 for points.
    position : int
        Permutation positions of this epoch already used by all ranks together;
        for points, the number of batches drawn.
    """

    def __init__(self, dataset: PointMixture | ImageDataset, batch_size: int, seed: int,
                 rank: int = 0, world_size: int = 1):
        self.dataset = dataset
        self.batch_size = coerce_int("batch_size", batch_size, minimum=1)
        self.world_size = coerce_int("world_size", world_size, minimum=1)
        self.rank = coerce_int("rank", rank, minimum=0, maximum=self.world_size - 1)
        self.seed = coerce_int("seed", seed, minimum=0)
        self.epoch = 0
        self.position = 0
        self._permutation: torch.Tensor | None = None
        self._point_generator: torch.Generator | None = None
        if dataset.kind == "images":
            self._check_enough_images()

    @property
    def global_batch_size(self) -> int:
        """Images per step over all ranks, ``batch_size * world_size``."""
        return self.batch_size * self.world_size

    @property
    def batches_per_epoch(self) -> int | None:
        """Number of batches each rank draws per epoch, None for points."""
        if self.dataset.kind != "images":
            return None
        return len(self.dataset) // self.global_batch_size

    def _check_enough_images(self) -> None:
        count = len(self.dataset)
        if count >= self.global_batch_size:
            return
        if self.world_size == 1:
            message = (f"the dataset has {count} images but batch size {self.batch_size}: "
                       f"use a batch size of at most {count}")
        else:
            message = (f"the dataset has {count} images but batch size {self.batch_size} on each of {self.world_size} "
                       f"processes: use a batch size of at most {count // self.world_size}")
        raise ConfigError("batch_size", message)

    def next(self) -> torch.Tensor:
        """Return the next (batch_size, *dataset.shape) float32 batch of this rank."""
        if self.dataset.kind == "points":
            generator = self._block_generator()
            self.position += 1
            return self.dataset.sample(self.batch_size, generator)

        start = self.position + self.rank * self.batch_size
        indices = self._epoch_permutation()[start : start + self.batch_size]
        self.position += self.global_batch_size
        self._roll_over_if_epoch_done()
        return to_model_range(self.dataset.images[indices])

    def _block_generator(self) -> torch.Generator:
        """Return the generator for batch ``position``, reseeding at block starts and after a resume."""
        block, offset = divmod(self.position, POINT_BLOCK)
        if offset == 0 or self._point_generator is None:
            self._point_generator = torch.Generator().manual_seed(_derive_seed(self.seed, self.rank, block))
            for _ in range(offset):
                self.dataset.sample(self.batch_size, self._point_generator)
        return self._point_generator

    def _epoch_permutation(self) -> torch.Tensor:
        if self._permutation is None:
            generator = torch.Generator().manual_seed((self.seed + self.epoch) % _SEED_MODULUS)
            self._permutation = torch.randperm(len(self.dataset), generator=generator)
        return self._permutation

    def _roll_over_if_epoch_done(self) -> None:
        if self.position + self.global_batch_size > len(self.dataset):
            self.epoch += 1
            self.position = 0
            self._permutation = None

    def state_dict(self) -> dict:
        """Return the position in the stream as plain ints and strings."""
        state = {"kind": self.dataset.kind, "seed": self.seed, "epoch": self.epoch, "position": self.position}
        if self.dataset.kind == "images":
            state["num_images"] = len(self.dataset)
        return state

    def load_state_dict(self, state: dict) -> None:
        """Continue from ``state``, so the next batches equal those of an uninterrupted sampler.

        The saved seed replaces this sampler's seed. The world size may differ
        from the one that saved the state, because the position counts images.

        Raises
        ------
        ConfigError
            When the state was saved for other data or another number of images.
        """
        if state.get("kind") != self.dataset.kind:
            raise ConfigError("data", f"the saved sampler state is for {state.get('kind')} data, "
                              f"but this dataset contains {self.dataset.kind}; resume with the same data")
        if self.dataset.kind == "images" and state.get("num_images") != len(self.dataset):
            raise ConfigError("data", f"the saved sampler state is for {state.get('num_images')} images, "
                              f"but this dataset has {len(self.dataset)}; resume with the same data")
        self.seed = int(state["seed"])
        self.epoch = int(state["epoch"])
        self.position = int(state["position"])
        self._permutation = None
        self._point_generator = None
        if self.dataset.kind == "images":
            self._roll_over_if_epoch_done()


def _derive_seed(seed: int, rank: int, index: int) -> int:
    words = np.random.SeedSequence([seed, rank, index]).generate_state(2, dtype=np.uint32)
    return int(words[0]) << 32 | int(words[1])
