"""Day-2 operations, installed into the cluster like the platform (one component per file):
metrics (kube-prometheus-stack, dcgm-exporter), alerts (PrometheusRules to an SNS topic),
the model's dashboard and scrape config, container logs (CloudWatch) and the load
balancer's access logs (S3). `observability.enabled: false` leaves all of it out."""
