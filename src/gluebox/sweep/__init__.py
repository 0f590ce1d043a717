"""``gluebox sweep``: a hyperparameter search over a declared space, run on Ray Tune.

- :mod:`gluebox.sweep.spec`: the sweep file (base config, search space, settings) and the
  seeded sampling of every trial's configuration, done by gluebox before Ray starts;
- :mod:`gluebox.sweep.trial`: what runs inside a Ray worker: the normal ``train`` recipe with a
  callback that reports each epoch to Tune;
- :mod:`gluebox.sweep.report`: the leaderboard (Markdown, CSV), the plot and ``sweep.json``,
  built from the trials' run directories.

Ray is imported only through :mod:`gluebox.sweep.cluster` (by `gluebox sweep` and `gluebox glue --address`) and inside trials (``pip install 'gluebox[sweep]'``).
"""
