"""Local runner and vendor simulators: development and demo only, never deployed."""
