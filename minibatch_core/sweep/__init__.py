"""Sweeps (and studies): plan a grid over the axes, run it, append records."""
