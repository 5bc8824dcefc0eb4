"""End to end: the CLI's run of configs/test.py (the one tests/test_resume.py runs whole),
and the CLI's input errors."""
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
import test_resume  # noqa: E402  (its uninterrupted run is this module's end-to-end run)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUN_KEYS = ("seed", "ari", "nmi", "bayes_ari", "target_accuracy", "observational_identified",
            "elbo", "heldout_loglik", "true_heldout_loglik")
NUM_RUNS = 2  # configs/test.py's


@pytest.fixture
def end_to_end(early):
  """The metrics.json of the uninterrupted CLI run of configs/test.py (200 steps) that
  tests/test_resume.py compares the killed and resumed run with: one background job
  (conftest.py: ``early``) for both modules, no second compile of the same run here."""
  return early["written"]


@pytest.mark.early(job=test_resume._kill_and_resume)
def test_metrics_json_schema(end_to_end):
  written = end_to_end
  assert set(written) >= {"runs", "summary", "wall_seconds", "config"}
  assert written["config"]["num_runs"] == NUM_RUNS
  assert len(written["runs"]) == NUM_RUNS
  for i, row in enumerate(written["runs"]):
    assert set(row) >= set(RUN_KEYS), set(RUN_KEYS) - set(row)
    assert row["seed"] == i
    assert isinstance(row["observational_identified"], bool)
    for key in RUN_KEYS[1:]:
      if key != "observational_identified":
        assert isinstance(row[key], float) and math.isfinite(row[key]), (key, row[key])
    for key in ("ari", "bayes_ari", "target_accuracy"):
      assert -1.0 <= row[key] <= 1.0 + 1e-6
    assert 0.0 <= row["nmi"] <= 1.0 + 1e-6
  assert isinstance(written["wall_seconds"], float) and written["wall_seconds"] > 0


@pytest.mark.early(job=test_resume._kill_and_resume)
def test_summary_consistent_with_runs(end_to_end):
  written = end_to_end
  runs, summary = written["runs"], written["summary"]
  for key in ("ari", "nmi", "bayes_ari", "elbo", "heldout_loglik"):
    col = np.array([r[key] for r in runs])
    assert summary[key]["mean"] == pytest.approx(col.mean(), rel=1e-6, abs=1e-9)
    assert summary[key]["min"] == pytest.approx(col.min(), rel=1e-6, abs=1e-9)
    assert summary[key]["max"] == pytest.approx(col.max(), rel=1e-6, abs=1e-9)
  assert summary["observational_identified"] == sum(r["observational_identified"] for r in runs)


@pytest.mark.early(job=test_resume._kill_and_resume)
def test_end_to_end_quality(end_to_end):
  written = end_to_end
  runs = written["runs"]
  mean_ari = np.mean([r["ari"] for r in runs])
  mean_bayes = np.mean([r["bayes_ari"] for r in runs])
  assert mean_bayes > 0.5
  assert mean_ari >= 0.9 * mean_bayes, (mean_ari, mean_bayes)
  for r in runs:
    # The fitted model's held-out density is close to the true one (nats per sample).
    assert abs(r["heldout_loglik"] - r["true_heldout_loglik"]) < 0.5, r
    if "train_log_px" in r:  # the ELBO is a lower bound of log p(x) on the same data
      assert r["elbo"] <= r["train_log_px"] + 1e-3, r


def _cli(popen, folder, name, override):
  """The CLI on configs/test.py with one override: ``(workdir, CompletedProcess)``."""
  workdir = folder / name
  args = [sys.executable, "-m", "experiments.run", "--config=configs/test.py",
          f"--workdir={workdir}", override]
  with open(folder / f"{name}.out", "w") as out, open(folder / f"{name}.err", "w") as err:
    proc = popen(args, cwd=ROOT, stdout=out, stderr=err)
    proc.wait(timeout=120)
  return workdir, subprocess.CompletedProcess(args, proc.returncode,
                                              (folder / f"{name}.out").read_text(),
                                              (folder / f"{name}.err").read_text())


BAD = {"batch_size": dict(batch_size=100000), "estimator": dict(estimator="bogus")}


@pytest.mark.parametrize("needle", ["batch_size", "estimator", "seed"])
def test_bad_value_one_line_error(needle, tmp_path):
  """An impossible value: driver.run's one-line UserError (the CLI prints it as
  ``error: ...``, no traceback: tests/test_sharding.py, tests/test_own_data_sharding.py),
  raised before anything ran or was written."""
  from configs import test as test_config
  from experiments import driver
  config = test_config.get_config()
  if needle == "seed":
    config.seed = -1
  else:
    config.train.update(BAD[needle])
  workdir = tmp_path / "w"
  with pytest.raises(driver.UserError) as err:
    driver.run(config, str(workdir))
  assert needle in str(err.value) and "\n" not in str(err.value), str(err.value)
  assert not workdir.exists()  # rejected before anything ran: nothing written


def _unknown_key(folder, popen):
  """The CLI on an override naming no key (start-up and a parse), as a background job
  (conftest.py: ``early``): ``(workdir, process)``."""
  return _cli(popen, folder, "no_such_key", "--config.train.num_step=1")


@pytest.mark.early(job=_unknown_key)
def test_cli_unknown_key_one_line_error(early):
  # README: "An unknown key or an impossible value stops the run with a one-line
  # error before anything is compiled." (Also the old test_cli_unknown_key_exits_nonzero:
  # the same command.)
  workdir, proc = early
  assert proc.returncode != 0
  assert not (workdir / "metrics.json").exists()
  assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
  lines = [l for l in proc.stderr.splitlines() if l.strip()]
  # the flag as given and ml_collections' suggestion, once (it was a repr of a repr)
  assert lines and lines[-1].startswith("error: unknown config key 'config.train.num_step' ("
                                        "did you mean \"num_steps\""), proc.stderr[-2000:]
  assert "\\" not in lines[-1], lines[-1]


@pytest.mark.fast
def test_entry_points_name_a_bad_flag_value_in_one_line():
  """What the entry points (graphs, heldout, real_data, bench, compare) raise for a bad
  list flag: ``experiments.BadFlag``, one line (``experiments.run_main`` prints it as
  ``error: ...`` and exits non-zero); and ml_collections' error on a misspelt config key
  as one line, its suggestion kept."""
  import experiments
  import ml_collections
  from experiments import driver
  assert experiments.seeds_of(["100", "7"]) == [100, 7]
  for bad, words in ((["1", "-1"], "--seeds: -1 is negative"), (["abc"], "'abc' is not an")):
    with pytest.raises(experiments.BadFlag, match=words):
      experiments.seeds_of(bad)
  for bad, words in (([], "--seeds is empty"), (["100", "100"], "--seeds: 100 is given twice")):
    with pytest.raises(experiments.BadFlag, match=words):  # (an empty table; a seed twice)
      experiments.seeds_of(bad)
  with pytest.raises(experiments.BadFlag,
                     match=r"unknown families \['bogus'\]; known: \['a', 'b'\]"):
    experiments.names_known(["a", "bogus"], ("b", "a"), "families")
  with pytest.raises(experiments.BadFlag, match=r"no families given; known: \['a', 'b'\]"):
    experiments.names_known([], ("b", "a"), "families")
  with pytest.raises(experiments.BadFlag, match=r"methods \['a'\] given twice"):
    experiments.names_known(["a", "b", "a"], ("b", "a"), "methods")  # (it had run twice)
  # an OSError in one line: a read-only workdir, a config file that did not load
  assert experiments.os_error_line(OSError(30, "Read-only file system", "/x/config.json")) \
      == "Read-only file system: /x/config.json"
  assert experiments.os_error_line(OSError(
      "Failed loading config file config_config\n  Attempted [Relative path]:\n    c/e.py\n"
      "      [Errno 2] No such file or directory: 'c/e.py'")) == \
      "cannot load the config file: [Errno 2] No such file or directory: 'c/e.py'"
  from configs import er
  config = er.get_config()
  config.train.log_every = 0  # (a ZeroDivisionError once the run had trained)
  with pytest.raises(driver.UserError, match="train.log_every=0 must be >= 1"):
    driver.validate_config(config)
  config = ml_collections.ConfigDict({"model": {"noise": "gauss"}})
  config.lock()
  with pytest.raises(AttributeError) as err:
    config.model.nois = "t"
  line = driver.unknown_key(err.value, ["x", "--config.model.nois=t"])
  assert line.startswith("unknown config key 'config.model.nois' (did you mean \"noise\""), line
  assert "\n" not in line and "\\" not in line
  # a comparison setting takes only the keys its file gives it: the line lists them
  import os
  from configs import compare
  config = compare.get_config()
  config.lock()
  with pytest.raises(AttributeError) as err:
    config.settings.shift4.n_nodes = 0
  file = os.path.join(os.path.dirname(os.path.dirname(__file__)), "configs", "compare.py")
  line = driver.unknown_key(err.value, ["x", "--config.settings.shift4.n_nodes=0"], file)
  assert line == ("unknown config key 'config.settings.shift4.n_nodes' (config.settings.shift4 "
                  "has only the keys noise_high, noise_low, shift)"), line


@pytest.mark.fast
def test_make_data_keeps_a_users_files_and_checks_its_scm_group(tmp_path):
  import experiments
  from experiments import driver, make_data
  make_data.check_out(str(tmp_path / "new"))  # a new folder, or an empty one: fine
  make_data.check_out(str(tmp_path))
  (tmp_path / "data.csv").write_text("keep\n")  # the user's, not an earlier run's
  with pytest.raises(experiments.BadFlag, match="already holds files \\(data.csv"):
    make_data.check_out(str(tmp_path))
  for name in make_data.OUTPUTS:  # an earlier make_data run's folder is written again
    (tmp_path / name).write_text("")
  make_data.check_out(str(tmp_path))
  from configs import er
  scm = er.get_config().scm
  driver.validate_scm(scm)
  scm.n_nodes = 0
  with pytest.raises(driver.UserError, match="scm.n_nodes=0 must be >= 1"):
    driver.validate_scm(scm)


@pytest.mark.fast
def test_compare_checks_its_settings_before_any_work(tmp_path):
  """A misspelt mechanism, an impossible n_nodes or edge_prob in one of compare's
  settings, an empty method list, an unknown real-data set or ablation setting: one line
  each, before anything is written (they were a traceback mid-grid, a ZeroDivisionError,
  accepted, or silently nothing)."""
  from configs import compare as compare_config
  from experiments import grid
  cases = [("settings.mlp_shift4.mechanism", "mpl", "scm.mechanism='mpl' is not one of"),
           ("settings.n30_shift4.n_nodes", 0, r"scm.n_nodes=0 must be >= 1 .*n30_shift4"),
           ("settings.mlp_shift4.edge_prob", 2.0, "scm.edge_prob=2.0 must be in"),
           ("methods", "", "methods is empty"),
           ("real_data", "sachz", r"real_data names \['sachz'\]"),
           ("ablation_settings", "mlp_shift5", r"ablation_settings names \['mlp_shift5'\]")]
  assert "vcm_gumbel" in compare_config.get_config().methods  # (an ablation: they are read)
  for path, value, words in cases:
    config = compare_config.get_config()
    *groups, last = path.split(".")
    node = config
    for g in groups:
      node = node[g]
    node[last] = value
    with pytest.raises(grid.UserError, match=words):
      grid.run(config, str(tmp_path / "run"))
    assert not (tmp_path / "run").exists()


@pytest.mark.fast
def test_an_override_under_a_value_given_on_the_command_line_says_why_it_names_no_key():
  """ml_collections applies ``--config.settings.tiny.shift=5`` to the config file's
  settings, not to a ``--config.settings={...}`` given beside it: the one line names the
  flag and says so (it read "unknown config key 'tiny'", a key the user had just given)."""
  from experiments import driver
  argv = ["compare", '--config.settings={"tiny": {"n_nodes": 3}}',
          "--config.settings.tiny.shift=5.0"]
  line = driver.unknown_key(AttributeError(KeyError("'tiny'")), argv)
  assert line.startswith("unknown config key 'config.settings.tiny.shift'"), line
  assert "put the change in --config.settings=" in line
  plain = driver.unknown_key(AttributeError(KeyError("'bogus'\nDid you mean 'batch'?")),
                             ["run", "--config.train.bogus=1"])
  assert plain == "unknown config key 'config.train.bogus' (did you mean 'batch'?)", plain


@pytest.mark.fast
def test_a_rerun_of_a_finished_run_keeps_its_metrics_as_written(tmp_path):
  """metrics.json that holds the same runs' results is kept as written, its first wall
  time with it (a rerun of a finished run had rewritten it with its own few seconds);
  other results are written."""
  from experiments import synthetic
  path = str(tmp_path / "metrics.json")
  first = {"runs": [{"seed": 0, "ari": 0.5}], "summary": {}, "wall_seconds": 30.0}
  assert synthetic.written_or_kept(path, first) is first
  written = (tmp_path / "metrics.json").read_bytes()
  rerun = dict(first, wall_seconds=2.0)
  assert synthetic.written_or_kept(path, rerun) == first
  assert (tmp_path / "metrics.json").read_bytes() == written
  other = {"runs": [{"seed": 0, "ari": 0.6}], "summary": {}, "wall_seconds": 2.0}
  assert synthetic.written_or_kept(path, other) is other
  assert json.loads((tmp_path / "metrics.json").read_text()) == other
  # the same runs with another summary (a library that summarises anew): written
  summarised = dict(other, summary={"ari": {"mean": 0.6}})
  assert synthetic.written_or_kept(path, summarised) is summarised


@pytest.mark.fast
def test_an_earlier_output_that_is_damaged_is_one_line_not_a_traceback(tmp_path):
  """graphs.json or heldout.json cut short or edited by hand: ``BadFlag`` naming the
  file (a JSONDecodeError or a KeyError traceback before); an intact one is read."""
  import experiments
  from experiments import heldout
  path = tmp_path / "heldout.json"
  for text in ('[{"family": "physical", ', '[{"foo": 1}]', '{"records": []}'):
    path.write_text(text)
    with pytest.raises(experiments.BadFlag, match="is not a heldout.json of this command"):
      heldout.earlier_rows(str(path))
  path.write_text('[{"family": "physical", "seed": 0, "rows": 100}]')
  assert heldout.earlier_rows(str(path)) == [{"family": "physical", "seed": 0, "rows": 100}]
