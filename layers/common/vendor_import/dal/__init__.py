"""Data access: S3 layout, the jobs table, the completion topic, the settings secret."""
