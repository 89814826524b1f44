"""The worker-side Prometheus exporter, a face of its own: ``python -m exporter`` serves it."""

from exporter.collector import NODE_BUCKETS, AgencyCollector, RunningExporter, serve_exporter

__all__ = ["NODE_BUCKETS", "AgencyCollector", "RunningExporter", "serve_exporter"]
