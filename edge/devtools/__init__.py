"""Development tools on top of everything: benchmarks, the demo, EU DCC conformance, synthetic
frames, test issuers. Imported by nothing on the device."""
