"""Side-by-side timing runs: the plan (plan.py; BenchError in errors.py) and its runner (runs.py), one
configuration in a worker (worker.py), result rows and the machine they ran on (results.py), CSV/Markdown export (export.py)."""
