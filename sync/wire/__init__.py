"""The wire both ends share: signed envelopes, the scan-record chain, sealed and keyed identifiers,
risk-list formats, key files, and the project's exception root. Imports nothing of edge or the server."""
