"""Pass formats: our own ``CP1:`` pass and the EU Digital COVID Certificate (``HC1:``)."""
