"""Shipping a built repository out of the workspace: the Instellar platform (push), S3 buckets (publish)."""
