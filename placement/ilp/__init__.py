"""The placement ILP: `problem` (typed numeric input), `variables`, `constraints`, `solver` (pulp + HiGHS,
CBC fallback) and `solve` (the pure function Problem → Solution)."""
