"""The ground floor: the vocabulary every component shares (errors, configuration loading, logs, the
role / device / tier names, the one percentile, the worker registry records, the local Redis launcher).

It imports nothing of the project; every component and the top floor may import it.
"""
