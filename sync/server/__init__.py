"""The central server: device enrollment, scan-record ingest, list publishing, fleet dashboard."""
