"""One module per ``minibatch-bench`` subcommand."""
