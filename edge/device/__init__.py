"""The device process around the scan path: composition root, daemon loop, status, staff screen, sync client."""
