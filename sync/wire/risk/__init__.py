"""Risk-list formats shared by publisher and device: entries, sorted segments, the set digest,
signed snapshots and deltas."""
