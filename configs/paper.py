"""The paper's exact recipe (configs/recipes.py, PAPER) on its own setting (configs/er.py)."""
from configs import base, er, recipes


def get_config():
  c = er.get_config()
  c.model, c.train = base.fit_groups(recipes.PAPER)
  return c
