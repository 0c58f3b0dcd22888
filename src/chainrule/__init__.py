"""chainrule: image classification for robot perception, built from the chain rule up."""

__version__ = "0.1.0"
