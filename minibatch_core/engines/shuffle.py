"""The DataLoader's shuffle, reproduced without a DataLoader.

Per epoch, ``iter(DataLoader(..., shuffle=True))`` draws two int64 values from the global torch RNG:
first the iterator's base seed (``_BaseDataLoaderIter.__init__``), then, on the first batch, the
``RandomSampler`` seed; it seeds a fresh ``torch.Generator`` with the second and yields
``torch.randperm(n, generator=g)``. The reference engine uses the global RNG for nothing else after
building the model, so a private generator cloned from the global state at that moment yields the
same permutations, epoch after epoch, while leaving the global RNG untouched (no global state).
"""

from __future__ import annotations

import torch


class LoaderShuffle:
    """Epoch permutations equal to those of ``DataLoader(TensorDataset(...), shuffle=True)``.

    Construct it at the point where the reference engine builds its DataLoader (right after the model
    is built from ``torch.manual_seed(seed)``).
    """

    def __init__(self, n: int) -> None:
        self.n = n
        self._rng = torch.Generator()
        self._rng.set_state(torch.get_rng_state())

    def _draw(self) -> int:
        return int(torch.empty((), dtype=torch.int64).random_(generator=self._rng).item())

    def next_permutation(self) -> torch.Tensor:
        """The next epoch's order of sample indices (int64, CPU)."""
        self._draw()  # the loader iterator's base seed (used only by worker processes)
        sampler = torch.Generator()
        sampler.manual_seed(self._draw())
        return torch.randperm(self.n, generator=sampler)

