"""The end-to-end demo: a central server and one checkpoint, on loopback, in one process."""
