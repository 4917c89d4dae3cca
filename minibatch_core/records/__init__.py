"""Records: THE schema of what a run is and what its files hold.

- ``axes``: the sweep axes (defaults from ``RunConfig``, parsers, columns): the one list of what a run is;
  ``values``: the parsers of the values users write;
- ``identity``: the configuration identity (``IDENTITY_COLUMNS``, ``config_id``, ``run_id``);
- ``columns``: runs.csv / profile.csv columns with types, units and meanings;
- ``rows``: the one writer (RunResult -> rows); ``io``: the one loader (file -> checked, typed frame).
"""
