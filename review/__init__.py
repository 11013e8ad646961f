"""Reviewer tooling, apart from the components it inspects: the program synthesized offline
(synth.py with records.py, stack_files.py and mocks.py), its Helm charts rendered
(rendering.py), the plan and diff (plan.py) and the monthly cost (cost.py, prices.json)."""
