"""Where pods run: the workload node groups (node_groups.py) and the labels, taints and
tolerations that steer pods onto them (placement.py)."""
