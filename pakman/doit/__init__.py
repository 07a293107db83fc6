"""The doit adapter: steps -> doit tasks, and the reporter (the only modules that import doit)."""
