"""Which sizes share a padded compiled program: fits of several K (regimes, mixture
components) padded to the largest of their run are one program instead of one each."""
from __future__ import annotations

# Sizes share a padded program while the padded copies differ by at most this factor
# (``k + 1``: a decoder's regimes and the observational copy): padding costs compute (a
# padded copy is evaluated like any other), compiling a program costs seconds, and on a
# small CPU the two are of one size around here.
PAD_RATIO = 1.5


def close_runs(members: list, ks: list) -> list:
  """``members`` split into runs of close ``ks`` (sorted by K; a run's largest K + 1 is
  at most ``PAD_RATIO`` times its smallest's): one padded program a run."""
  if len(members) < 2:
    return [list(members)]
  order = sorted(range(len(members)), key=lambda i: ks[i])
  runs, start = [], None
  for i in order:
    if start is None or ks[i] + 1 > PAD_RATIO * (start + 1):
      runs.append([])
      start = ks[i]
    runs[-1].append(members[i])
  return runs
