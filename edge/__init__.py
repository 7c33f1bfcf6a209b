"""Edge checkpoint appliance: everything that runs on the device."""

__version__ = "0.1.0"
