"""The fleet as commanders see it: checkpoint health from heartbeats, activity, the pages."""
