"""safehold: backup and disaster recovery for a cloud service."""

__version__ = "0.1.0"
