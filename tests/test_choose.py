"""vcm_jax.choose: the candidates, the ICL and its parts, and the choice on easy data."""
import sys
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import vcm_jax
from vcm_jax import choose, scm, select

sys.path.insert(0, os.path.dirname(__file__))
import test_sparse  # noqa: E402  (the multi-target data)

BASE = vcm_jax.FitConfig(mechanism="linear", num_steps=100, pooled_steps=50, restarts=1)


def test_candidates_and_the_cost_budget():
  every = choose.candidates(BASE, 10, k_candidates=(2, 6))
  assert [(c.decoder, c.noise, c.n_regimes) for c in every] == [
      ("structured", "gauss", 0), ("structured", "student_t", 0), ("sparse", "gauss", 2),
      ("sparse", "gauss", 6), ("sparse", "student_t", 2), ("sparse", "student_t", 6)]
  # A budget of 40 mechanism evaluations per row: structured (2N = 20) and sparse K = 2
  # ((K + 1) N = 30) stay, sparse K = 6 (70) goes.
  cheap = choose.candidates(BASE, 10, k_candidates=(2, 6), max_mechanisms=40)
  assert {(c.decoder, c.n_regimes) for c in cheap} == {("structured", 0), ("sparse", 2)}
  assert choose.default_k(4) == (2, 3, 4)


def test_icl_is_bic_minus_the_posterior_entropy_and_picks_the_latent_that_holds():
  """On single-target data the single-target latent wins; on data with a two-target
  regime a sparse one does, its K the best ICL among the sparse candidates. The
  reported parts recompute from the fit."""
  true = scm.sample_linear_scm(jax.random.key(0), jnp.asarray(test_sparse.ADJ), shift=4.0)
  x, _ = scm.sample_data(jax.random.key(1), true, 2000)
  single = choose.choose_model(jax.random.key(0), np.asarray(x), test_sparse.ADJ, BASE,
                               k_candidates=(2,), max_mechanisms=1)
  assert single.config.decoder == "structured", single.table
  # The noise families are fitted on the first latent (Student-t continued from the
  # Gaussian fit), the best is checked, and it holds: no other latent is fitted. The
  # budget of 1 mechanism evaluation per row rules out every latent but the first,
  # which is fitted whatever the budget.
  assert single.check["holds"] and single.check["of_chosen"] and not single.skipped
  assert sorted((r["decoder"], r["noise"]) for r in single.table) == [
      ("structured", "gauss"), ("structured", "student_t")], single.table
  assert single.table[0]["chosen"] and single.table[0]["bic"] == max(r["bic"] for r in single.table)
  np.testing.assert_allclose(single.fit.log_prob(x).mean(), single.table[0]["log_px"], rtol=1e-5)
  best = single.table[0]
  assert best["n_parameters"] == 2 * (4 + 2 * 4) + 5 - 1  # 2 states x sum(|pa| + 2), K - 1
  np.testing.assert_allclose(best["icl"], best["bic"] - best["entropy"])
  np.testing.assert_allclose(best["bic"], best["log_px"] * 2000 - 0.5 * np.log(2000) * 28,
                             rtol=1e-6)
  # The first stage alone (learn.refine's E-step): the same model, the same fit.
  cfg, fit = choose.noise_and_scale(jax.random.key(0), np.asarray(x), test_sparse.ADJ, BASE,
                                    choose.Selection(k_candidates=(2,), max_mechanisms=1))
  assert (cfg.decoder, cfg.noise, cfg.scale_model) == (
      single.config.decoder, single.config.noise, single.config.scale_model)
  np.testing.assert_allclose(fit.bic(x), best["bic"], rtol=1e-6)
  x2, _, _ = test_sparse._multi_target_data(n=2000)
  logged = ([], [])
  multi = choose.choose_model(jax.random.key(0), x2, test_sparse.ADJ, BASE, noises=("gauss",),
                              k_candidates=(2, 3), log=logged[0].append)
  assert multi.config.decoder == "sparse", multi.table
  assert not multi.check["holds"] and not multi.skipped  # the check fails: every candidate
  # The misfit counts where a latent with several changes won; and where none was fitted.
  assert multi.misfit_confirmed and single.misfit_confirmed
  # Where one was fitted and the single-target latent won, it does not.
  lost = multi._replace(config=single.config, table=[dict(r, decoder="structured")
                                                     for r in multi.table[:1]] + multi.table[1:])
  assert not lost.misfit_confirmed
  assert multi.table[0]["chosen"] and sum(r["finalist"] for r in multi.table) == 2
  sparse_rows = [r for r in multi.table if r["decoder"] == "sparse"]
  assert multi.table[0]["icl"] == max(r["icl"] for r in sparse_rows)  # K by ICL
  # The sparse latent with K = N + 1 contains the single-target one and starts from its
  # fit (tests/test_failsafe.py: the conversion is exact): never below it. (On 100 steps
  # it may stop below the sparse K = 3 it also contains: then it is marked failed, out.)
  first = next(r for r in multi.table if r["decoder"] == "structured")
  nested = next(r for r in sparse_rows if r["n_regimes"] == 5)
  assert nested["log_px"] >= first["log_px"] - 1e-3, multi.table
  assert "structured" not in nested.get("failed", ""), nested
  assert not (nested.get("failed") and nested["chosen"]), multi.table
  # Side by side (``selection.threads``; the suite runs one thread, conftest.py), the
  # choice is the same: its table, the rows logged and their order, its fit. Here the
  # sparse K = N + 1 grown from the first fit runs beside the run of K = 2-3, and below,
  # the first fit's two other noise families' continuations beside each other.
  again = choose.choose_model(jax.random.key(0), x2, test_sparse.ADJ, BASE, noises=("gauss",),
                              k_candidates=(2, 3), log=logged[1].append, threads=2)
  assert logged[0] == logged[1] and again.table == multi.table, (logged, again.table)
  assert [r.get("started_from") for r in logged[0]].count("structured K=5") == 1, logged[0]
  np.testing.assert_array_equal(np.asarray(again.fit.log_prob(x2)),
                                np.asarray(multi.fit.log_prob(x2)))
  stages = [choose.first_stage(jax.random.key(0), np.asarray(x), test_sparse.ADJ, BASE,
                               noises=("gauss", "student_t", "laplace"), max_mechanisms=1,
                               threads=t).table for t in (1, 2)]
  assert [f.row for f in stages[0]] == [f.row for f in stages[1]]
  assert [f.cfg.noise for f in stages[0]] == ["gauss", "student_t", "laplace"]


def test_padded_candidates_are_the_unpadded_fits_in_one_program():
  """Sparse candidates of K = 2 and 3 share one compiled program (padded to K = 3); each
  is the fit of its own K: the same log p(x) and the same parameters once unpadded."""
  x, _, _ = test_sparse._multi_target_data(n=2000)
  cfgs = [BASE.replace(decoder="sparse", n_regimes=k, num_steps=40, pooled_steps=20)
          for k in (2, 3)]  # (equal numbers are the point, not a good fit: few steps)
  choose._fit_and_score.cache_clear()
  padded = choose.fit_candidates(jax.random.key(0), x, test_sparse.ADJ, cfgs)
  assert choose._fit_and_score.cache_info().misses == 1  # one program for both K
  for cfg, got in zip(cfgs, padded):
    alone = vcm_jax.fit(x, test_sparse.ADJ, key=jax.random.key(0), config=cfg)
    assert got.fit.n_regimes == cfg.n_regimes and got.row["fitted_with"] == [2, 3]
    np.testing.assert_allclose(got.fit.log_prob(x), alone.log_prob(x), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(got.row["log_px"], float(alone.log_prob(x).mean()), rtol=1e-5)
    np.testing.assert_array_equal(np.asarray(got.fit.model.gates_on(got.fit.result.params)),
                                  np.asarray(alone.model.gates_on(alone.result.params)))


def test_only_a_learned_prior_with_the_exact_posterior_pads_k():
  """Padding switches extra regimes off through the learned prior: a fixed or uniform
  prior, or an encoder's q, cannot be padded, and each K is then fitted alone."""
  free = BASE.replace(decoder="free", n_regimes=3)
  assert choose.pads(free) and choose.pads(free.replace(decoder="sparse"))
  assert not choose.pads(BASE)  # the single-target latent has one K
  assert not choose.pads(free.replace(prior="uniform"))
  assert not choose.pads(free.replace(posterior="encoder"))
  x, _, _ = test_sparse._multi_target_data(n=600)
  cfg = free.replace(prior="uniform", num_steps=30, pooled_steps=10, k_candidates=(2, 3))
  choose._fit_and_score.cache_clear()
  sel = select.choose_n_regimes(jax.random.key(0), x, test_sparse.ADJ, config=cfg,
                                max_parents=2)
  assert choose._fit_and_score.cache_info().misses == 2  # one program per K, unpadded
  assert set(sel.heldout_log_px) == {2, 3}
  assert np.all(np.isfinite(list(sel.heldout_log_px.values())))
  assert sel.n_regimes == max(sel.heldout_log_px, key=sel.heldout_log_px.get)
  # Those two programs side by side (``vcm_jax.concurrency``, two threads) give the fits
  # they give one after the other, to the bit.
  cfgs = [cfg.replace(n_regimes=k) for k in (2, 3)]
  one, two = (choose.fit_candidates(jax.random.key(1), x, test_sparse.ADJ, cfgs, threads=t)
              for t in (1, 2))
  for a, b in zip(one, two):
    assert a.cfg == b.cfg and a.row == b.row
    jax.tree.map(np.testing.assert_array_equal, a.fit.result.params, b.fit.result.params)


@pytest.mark.fast
def test_a_continued_best_first_fit_is_also_fitted_from_scratch_and_the_better_stays():
  """``choose._with_a_fresh_start``: the best first-decoder model by BIC, where it was
  continued from a plainer fit, is fitted from scratch as well; the higher log p(x) of
  the two takes its place (a continuation keeps the plainer fit's assignment)."""
  base = vcm_jax.FitConfig(decoder="structured")
  row = lambda bic, log_px: {"bic": bic, "log_px": log_px}
  plain = choose._Fitted(base, row(-120.0, -12.0), "plain fit")
  continued = choose._Fitted(base.replace(scale_model="parents"), row(-110.0, -11.8), "continued")
  asked, logged = [], []

  def fitted(cfgs, start=None, log_px=-11.5, log_rows=True):
    asked.append((cfgs, start, log_rows))
    return [choose._Fitted(cfgs[0], row(-100.0, log_px), "fresh")]

  table = choose._with_a_fresh_start([plain, continued], fitted, logged.append)
  assert [f.fit for f in table] == ["plain fit", "fresh"]
  assert asked == [([continued.cfg], None, False)]  # from scratch: no start
  assert logged == [table[1].row]  # the row that stays is logged, once
  logged.clear()
  worse = lambda cfgs, start=None, log_rows=True: fitted(cfgs, start, -11.9, log_rows)
  assert [f.fit for f in choose._with_a_fresh_start([plain, continued], worse,
                                                    logged.append)] == ["plain fit", "continued"]
  assert not logged  # a fresh start that lost is not a candidate: not logged
  asked.clear()  # the best is the first fit itself (already from scratch): nothing refitted
  best_first = choose._Fitted(base, row(-90.0, -11.0), "first")
  assert choose._with_a_fresh_start([best_first, continued], fitted)[0] is best_first
  assert not asked


@pytest.mark.fast
def test_more_starts_run_in_the_program_of_the_candidates_fitted_from_scratch(monkeypatch):
  """The chosen model's further starts go through the padded program it was fitted in
  (its bucket of K, ``padding.PAD_RATIO``), as many a call as that program's batch; a candidate
  started from another fit (``started_from``) had its own program and pads nothing."""
  from types import SimpleNamespace
  calls = []

  def fake_candidate_jobs(keys, x, adj, cfgs, x_heldout=None, *, pad_to=0):
    def job():  # (one program: one job)
      calls.append((len(keys), len(cfgs), pad_to))
      return [choose._Fitted(c, {}, SimpleNamespace(result=SimpleNamespace(
          restart_log_px=np.array([-1.0 - len(calls)])))) for c in cfgs]
    return [job], lambda results: results[0]

  monkeypatch.setattr(choose, "candidate_jobs", fake_candidate_jobs)
  cfg = BASE.replace(decoder="sparse", n_regimes=8)
  row = lambda k, **more: dict(decoder="sparse", noise=cfg.noise, scale_model=cfg.scale_model,
                               n_regimes=k, chosen=k == 8, **more)
  table = [row(k) for k in (2, 3, 4, 6, 8)] + [row(12, started_from="sparse K=8")]
  keep = SimpleNamespace(result=SimpleNamespace(restart_log_px=np.array([-1.5])))
  choice = choose.ModelChoice(cfg, table)
  got = choose._more_starts(jax.random.key(0), None, None, choice, 4, keep, None)
  assert calls == [(1, 1, 8)] * 3  # K = 8 alone in its bucket: 3 more starts, unpadded
  assert got is keep  # (every fake start scored below it)
  calls.clear()
  table[-1].pop("started_from")  # fitted with the others: K = 8 and 12 share a bucket
  choose._more_starts(jax.random.key(0), None, None, choice, 4, keep, None)
  assert calls == [(2, 2, 12)] * 2
  calls.clear()
  table[4]["fitted_with"] = [7, 8, 9]  # the program it was fitted in says more
  choose._more_starts(jax.random.key(0), None, None, choice, 4, keep, None)
  assert calls == [(3, 3, 9)]


@pytest.mark.fast
def test_the_k_the_grid_skipped_beside_the_best_is_fitted_too():
  """``choose._missing_neighbours``: K - 1 and K + 1 of the best sparse candidate by ICL,
  where the default grid skipped them and they lie inside it; failed fits are passed
  over, a candidate started from another fit lends no settings (it has one start), and
  K given by the user are kept as given."""
  cfg = BASE.replace(decoder="sparse", restarts=4)
  sel = choose.Selection()

  def fits(icl, grown=()):
    return [choose._Fitted(cfg.replace(n_regimes=k, restarts=1 if k in grown else 4),
                           dict(decoder="sparse", noise=cfg.noise, scale_model=cfg.scale_model,
                                n_regimes=k, log_px=-10.0 + 0.01 * k, icl=v,
                                **({"started_from": "sparse K=8"} if k in grown else {})), None)
            for k, v in icl.items()]

  ks = lambda cfgs: [(c.n_regimes, c.restarts) for c in cfgs]
  grid = {2: -9.0, 3: -8.0, 4: -7.0, 6: -7.5, 8: -7.8, 12: -9.0}
  assert ks(choose._missing_neighbours(fits(grid, grown=(12,)), 11, sel)) == [(5, 4)]
  assert ks(choose._missing_neighbours(fits({**grid, 6: -6.0}), 11, sel)) == [(5, 4), (7, 4)]
  assert ks(choose._missing_neighbours(fits({**grid, 3: -5.0}), 11, sel)) == []
  assert ks(choose._missing_neighbours(fits({**grid, 12: -5.0}), 11, sel)) == [(11, 4)]  # not 13
  failed = fits({**grid, 8: -5.0})
  failed[4].row["log_px"] = -11.0  # K = 8 below K = 6, which it contains: not the best
  assert ks(choose._missing_neighbours(failed, 11, sel)) == [(5, 4)]
  assert choose._missing_neighbours([], 11, sel) == []
  given = choose.Selection(k_candidates=(2, 3, 4, 6, 8))  # the K asked for: no other
  assert choose._missing_neighbours(fits(grid), 11, given) == []


@pytest.mark.fast
def test_side_by_side_jobs_keep_their_order_and_raise_the_first_error():
  """``concurrency.run_side_by_side``: the jobs' results in the jobs' order, whatever
  ends first; every job runs, and the first failing job's exception (in order) is raised."""
  import threading
  import time
  from vcm_jax import concurrency
  ran, second_started = [], threading.Event()

  def slow():
    second_started.wait(5)  # (ends after the second job has started: they overlap)
    ran.append("slow")
    return 1

  def quick():
    second_started.set()
    ran.append("quick")
    return 2
  assert concurrency.run_side_by_side([slow, quick], 2) == [1, 2]
  assert ran == ["quick", "slow"]  # both at once: the second ended first
  assert concurrency.run_side_by_side([slow, quick], 1) == [1, 2]  # (one after the other)

  def boom(message, delay):
    def job():
      time.sleep(delay)
      ran.append(message)
      raise ValueError(message)
    return job
  ran.clear()
  with pytest.raises(ValueError, match="first"):  # the first in order, not the first to end
    concurrency.run_side_by_side([boom("first", 0.2), boom("second", 0.0), quick], 2)
  assert ran[:2] == ["second", "first"] or ran[:3] == ["second", "quick", "first"], ran
  with pytest.MonkeyPatch.context() as patch:
    patch.delenv(concurrency.ENV, raising=False)
    assert 1 <= concurrency.default_threads() <= 4
    patch.setenv(concurrency.ENV, "3")
    assert concurrency.default_threads() == 3 and choose.Selection().n_threads == 3
    assert choose.Selection(threads=2).n_threads == 2
    patch.setenv(concurrency.ENV, "two")
    with pytest.raises(ValueError, match="VCM_JAX_THREADS='two' is not a positive integer"):
      concurrency.default_threads()
  with pytest.raises(ValueError, match="selection.threads=-1 must be >= 0"):
    choose.Selection(threads=-1)

