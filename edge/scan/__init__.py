"""One scan's path: frame source, decoder, debouncer, verifier, clock, scan log and lamps."""
