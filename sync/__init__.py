"""Sync: the wire protocol shared by both ends, the device's sync client, the central server."""
