"""Imported last by the worker forkserver (after the engine modules it was asked to preload, and
scikit-learn's datasets unless the command loads the data itself), so that each fresh run pays no import
cost in its timings.

Only imports: no torch op may run here (a forked OpenMP pool can hang) and CUDA must stay untouched.
"""

import gc
import multiprocessing.util
import os

import psutil  # noqa: F401 - every worker's orphan watch uses it
import torch._dynamo  # noqa: F401 - torch.optim.Optimizer.__init__ imports it lazily (~1.7 s)
import torch.optim  # noqa: F401
import torch.utils.data  # noqa: F401

from minibatch_core.running import trainer  # noqa: F401

# Every object imported so far moves to the permanent generation, which the garbage collector never
# scans. Without this, each forked worker's first full collection walked the whole torch/scikit-learn
# heap, writing to every object and so copying every page of it: 0.3-0.5 s per worker (measured in
# trainer.prewarm_engine's gc.collect), paid 30 times by the default sweep.
gc.freeze()

# The forkserver exits when its command does. Tearing down torch's modules then took 0.3 s, during which
# it still held the command's stdout and stderr: whoever reads them to the end (a pipe, a test) waited. So
# it leaves without that teardown, after multiprocessing's exit handlers and those registered after them.
# Its workers drop this at their start (multiprocessing clears the finalizers of a new process).
multiprocessing.util.Finalize(None, os._exit, args=(0,), exitpriority=-1_000_000)
