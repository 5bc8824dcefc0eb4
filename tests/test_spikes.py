"""Hard interventions inside a column's bulk: the spike detector (units.interior_spikes),
the structured start on a spike (init.start_at_spikes) and the training's spike floor
(FitConfig.spike_floor)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

import vcm_jax
from vcm_jax import config, units


def _columns(rng, n=3000):
  """A spike inside the bulk (300 rows on 0.7, spread 1e-5), then five without one: a
  Gaussian, counts (ties), a floor (half the rows pinned at 0), a shifted regime, and a
  near-deterministic one (spread 1e-3 around a line in a uniform input)."""
  bulk = rng.normal(size=n)
  spike = np.where(np.arange(n) < 300, 0.7 + 1e-5 * rng.normal(size=n), bulk)
  counts = rng.poisson(3.0, size=n).astype(float)
  floored = np.maximum(rng.normal(size=n), 0.0)
  shifted = rng.normal(size=n) + np.where(np.arange(n) < 600, 3.0, 0.0)
  near = 2.0 * rng.uniform(size=n) + 1e-3 * rng.normal(size=n)
  return np.column_stack([spike, bulk, counts, floored, shifted, near])


@pytest.mark.fast
def test_interior_spikes_finds_a_hard_intervention_not_ties_bounds_or_shifts():
  x = _columns(np.random.default_rng(0))
  found, centre = units.interior_spikes(jnp.asarray(x, jnp.float32), 0.02, 0.01)
  assert np.asarray(found).tolist() == [True, False, False, False, False, False]
  assert abs(float(centre[0]) - 0.7) < 1e-4
  # Scale-free: the same columns in other units, the centre moved with them.
  a, b = np.array([1e3, 2.0, 1.0, 5.0, 0.1, 7.0]), np.arange(6.0)
  found2, centre2 = jax.jit(units.interior_spikes, static_argnums=(1, 2))(
      jnp.asarray(x * a + b, jnp.float32), 0.02, 0.01)
  assert np.asarray(found2).tolist() == np.asarray(found).tolist()
  assert float(centre2[0]) == pytest.approx(0.7 * 1e3, abs=0.1)
  # A narrower spike than the ratio allows is not one: the same column read at ratio 1e-6.
  assert not bool(units.interior_spikes(jnp.asarray(x, jnp.float32), 0.02, 1e-6)[0][0])


def test_hard_interventions_on_roots_are_found_and_kept():
  """Kumar et al.'s do(X_j = 1) (variance 1e-9) on 4 nodes, two of them roots, whose
  value 1 sits inside their own spread: without the spike start and floor the fit merges
  three regimes into the observational one (ARI 0.21); with them every regime is found."""
  from experiments import graph_settings
  d = graph_settings.kumar(1, "hard", n=4, rows=2500)
  cfg = config.data_default().replace(num_steps=1000, restarts=2, mechanism="linear",
                                      outlier_fraction=0.0)
  ari = {}
  for ratio in (0.0, cfg.spike_ratio):
    fit = vcm_jax.fit(d.x, d.adj, key=jax.random.key(1), config=cfg.replace(spike_ratio=ratio))
    ari[ratio] = adjusted_rand_score(d.labels, np.asarray(fit.assign(d.x)))
  assert ari[cfg.spike_ratio] > 0.98, ari
  assert ari[0.0] < 0.5, ari  # (the failure the spike start and floor mend)


@pytest.mark.fast
def test_the_spike_terms_are_left_out_where_no_column_has_a_spike():
  """``train.without_unused_terms``: the spike start and floor stay in the config (and so
  in the compiled programs) only where the rows have a spike."""
  from vcm_jax import train
  x = _columns(np.random.default_rng(0))
  cfg = config.data_default()
  assert train.without_unused_terms(cfg, x).spike_ratio == cfg.spike_ratio
  assert train.without_unused_terms(cfg, x[:, 1:]).spike_ratio == 0.0
  assert train.without_unused_terms(cfg.replace(spike_ratio=0.0), x).spike_ratio == 0.0
