"""The no-op path: the plan (a snapshot of what a build looked at), the watcher and its protocol."""
