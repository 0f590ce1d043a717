"""gluebox: fine-tune transformer encoders on GLUE tasks, or your own data, on small CPU-only machines."""

__version__ = "0.1.0"
