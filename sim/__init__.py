"""fishschool: agent-based simulation of social commerce."""

__version__ = "0.1.0"
