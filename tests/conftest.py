import os
import signal

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")

# A suite started in the background of a non-interactive shell (`pytest &` in a script) inherits SIGINT
# ignored, and an ignored signal stays ignored across exec: the commands the signal tests start would then
# never see their SIGINT. Caught here, it is reset to the default in every child instead.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

# the skip itself is defined once, in the rootdir's conftest.py (bench/ uses the same marker)
requires_cuda = pytest.mark.cuda
