"""Lists the device holds and swaps while running: the checkpoint's policy and the risk-list store."""
