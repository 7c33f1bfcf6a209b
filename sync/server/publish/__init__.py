"""The publishing side of the central server: signed risk-list snapshots and deltas from the authority's input."""
