import os
import signal

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")

# A suite started in the background of a non-interactive shell (`pytest &` in a script) inherits SIGINT
# ignored, and under `nohup` SIGHUP; an ignored signal stays ignored across exec, so the commands the signal
# tests start would never see theirs. Caught here, each is reset to the default in every child instead.
for _sig in (signal.SIGINT, signal.SIGHUP):
    if signal.getsignal(_sig) is signal.SIG_IGN:
        signal.signal(_sig, signal.default_int_handler)

# the skip itself is defined once, in the rootdir's conftest.py (bench/ uses the same marker)
requires_cuda = pytest.mark.cuda
