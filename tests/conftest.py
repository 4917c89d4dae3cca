import os

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")

# the skip itself is defined once, in the rootdir's conftest.py (bench/ uses the same marker)
requires_cuda = pytest.mark.cuda
