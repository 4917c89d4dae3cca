"""Imported once by the worker forkserver, so each fresh run pays no import cost in its timings.

Only imports: no torch op may run here (a forked OpenMP pool can hang) and CUDA must stay untouched.
"""

from importlib import import_module

import sklearn.datasets  # noqa: F401
import sklearn.preprocessing  # noqa: F401
import torch._dynamo  # noqa: F401 - torch.optim.Optimizer.__init__ imports it lazily (~1.7 s)
import torch.optim  # noqa: F401
import torch.utils.data  # noqa: F401

from minibatch_core import engines
from minibatch_core.running import trainer  # noqa: F401

for _name in engines.engine_names():
    import_module(engines._MODULES[_name])
