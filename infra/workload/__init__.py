"""The model-serving workload: the server's contract (contract.py), its image (image.py), the pod
(pod.py), the Ingress (ingress.py), what stands before it (front_door.py, dns_name.py), and the
component that declares the workload's objects (service.py)."""
