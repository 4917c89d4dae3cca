"""One module per ``minibatch-bench`` subcommand."""

# The one-line help of each subcommand, said here once: its module's add_parser uses it, and the top-level
# --help lists them without importing the modules (some need pandas).
SUMMARIES = {
    "train": "train once and print the lesson's per-epoch lines and a run summary",
    "run": "sweep batch size x device x seeds x datasets x engines; write runs.csv, tables, plots, report",
    "report": "rebuild summary, plots and report of a sweep folder from its runs.csv (no training)",
    "compare": "compare a current result set with a baseline; exit 1 on a regression",
    "baseline": "manage the committed baseline that `compare` checks against (see `baseline update`)",
    "study": "tune the learning rate per batch size, count steps/time to a validation target, fit the "
    "critical batch",
    "count": "count the CPU instructions of training per configuration under valgrind (instructions.csv)",
    "gate": "the CI regression gate: instruction counts vs a committed baseline, plus wall time",
    "ab": "A/B: two code versions measured interleaved on this machine; exit 1 on a slowdown",
}
