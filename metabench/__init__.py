"""metabench: which way of learning to learn wins, on which tasks, at what cost."""

__version__ = "0.1.0"
