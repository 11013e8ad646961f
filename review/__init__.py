"""Reviewer tooling, apart from the components it inspects: the program synthesized offline
(synth.py with records.py, stack_files.py and mocks.py), its Helm charts rendered (rendering.py),
what a stack declares as a reviewer reads it (summary.py), the diff of two syntheses (diff.py), the
monthly cost and its tables (cost.py, prices.json), and the command line over them (plan.py)."""
