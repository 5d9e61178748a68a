"""The placement ILP: `problem` (typed numeric input), `model` (variables, objective, constraints and
`optimize`, top to bottom), `terms` (the sums its rows are made of), `split` (exact decomposition by
model), `backend` (pulp on HiGHS, CBC fallback) and `result` (`Solution`, `Unsolved`, `SolveInfo`)."""
