"""The workspace on disk: where things go, finding apps, fingerprints, the journal, the store, the lock."""
