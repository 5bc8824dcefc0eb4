"""experiments.heldout's yardstick: a Gaussian mixture that fails on float32 rows is
tried on float64 rows (scikit-learn's own advice), and one that fails on both is
recorded, never a crash that loses the seed's fit."""
import numpy as np
import pytest

from experiments import heldout

pytestmark = pytest.mark.fast


class _Mixture:
  """A stand-in for scikit-learn's GaussianMixture: ``fails`` names the dtypes it
  rejects with scikit-learn's collapsed-component error."""
  fails = ()

  def __init__(self, n_components, n_init, random_state):
    self.k = n_components

  def fit(self, x):
    if x.dtype in self.fails:
      raise ValueError("Fitting the mixture model failed because some components have "
                       "ill-defined empirical covariance. Try to decrease the number")
    self.seen = x.dtype
    return self

  def predict(self, x):
    return np.arange(len(x)) % self.k


def test_a_mixture_that_fails_in_float32_is_fitted_in_float64():
  x = np.zeros((6, 2), np.float32)
  mixture = type("M", (_Mixture,), {"fails": (np.dtype(np.float32),)})
  labels, failed = heldout._gaussian_mixture(mixture, x, 3, 0)
  assert failed is None and labels.tolist() == [0, 1, 2, 0, 1, 2]
  labels, failed = heldout._gaussian_mixture(_Mixture, x, 2, 0)  # float32 works: as before
  assert failed is None and labels.tolist() == [0, 1, 0, 1, 0, 1]


def test_a_mixture_that_fails_on_both_is_recorded_not_raised():
  mixture = type("M", (_Mixture,), {"fails": (np.dtype(np.float32), np.dtype(np.float64))})
  labels, failed = heldout._gaussian_mixture(mixture, np.zeros((6, 2), np.float32), 3, 0)
  assert labels is None
  assert failed == ("Fitting the mixture model failed because some components have "
                    "ill-defined empirical covariance")


def test_entry_points_that_tests_import_define_their_flags_only_as_programs():
  """The experiments modules whose functions tests import define no absl flag on
  import (they do under ``__main__``), so one process can import them all: with
  ``VCM_TEST_BACKGROUND=0`` the suite runs in one process, and heldout and
  identifiability, each defining ``--workdir`` on import, failed two tests there."""
  import importlib

  from absl import flags
  names = ("experiments.heldout", "experiments.identifiability", "experiments.compare",
           "experiments.real_data")
  for name in names:
    importlib.import_module(name)
  defined = flags.FLAGS.flags_by_module_dict()
  assert not [n for n in names if defined.get(n)], {n: defined.get(n) for n in names}


def test_a_table_of_given_and_learned_graphs_says_which_row_is_which():
  given = {"family": "physical", "seed": 100, "rows": 8000, "ari": 0.77}
  learned = dict(given, graph="learned", shd=2)
  assert "| graph |" not in heldout.table([given])
  lines = heldout.table([given, learned]).splitlines()
  assert lines[0].startswith("| family | seed | graph |"), lines[0]
  assert lines[2].startswith("| physical | 100 | given |") and "| learned |" in lines[3], lines
