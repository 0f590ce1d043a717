"""``gluebox glue``: the whole GLUE benchmark in one command.

- :mod:`gluebox.suite.spec`: the suite's tasks, each task's train config (shared flags, per-task
  overrides) and its folder; every check of the input, before anything is written;
- :mod:`gluebox.suite.plan`: each task's example counts, estimated time and memory plan;
- :mod:`gluebox.suite.runner`: the tasks run (skipped, resumed or started) one after another, or
  as Ray tasks on a cluster, and their test predictions;
- :mod:`gluebox.suite.submission`: the leaderboard's zip, written and checked;
- :mod:`gluebox.suite.report`: the GLUE score, results.md and results.csv, the learning curves.
"""
