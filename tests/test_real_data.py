"""The Sachs rows of the comparison: the baselines' figures against the notes' measurements."""
from experiments import real_data


def test_sachs_rows_match_the_measured_baselines():
  """GMM-6 (notes/sachs.md: AMI 0.51-0.53 over seeds) and the supervised QDA reference
  (0.63-0.65); the markdown table holds one line per row."""
  rows = {r["method"]: r for r in real_data.sachs_rows(["gmm"], seed=0, gmm_k=(6,))}
  assert set(rows) == {"gmm_6", "gmm_bic", "supervised_qda_cv"}
  assert 0.46 < rows["gmm_6"]["ami"] < 0.58, rows["gmm_6"]
  assert rows["gmm_6"]["n_regimes"] == 6
  assert 0.58 < rows["supervised_qda_cv"]["ami"] < 0.72, rows["supervised_qda_cv"]
  assert rows["supervised_qda_cv"]["ami"] > rows["gmm_6"]["ami"]
  table = real_data.markdown(list(rows.values()))
  assert sum(line.startswith("| gmm") for line in table) == 2
