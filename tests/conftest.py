import os

import pytest
import torch

os.environ.setdefault("MPLBACKEND", "Agg")

requires_cuda = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA GPU; torch.cuda.is_available() is False on this machine"
)
