"""Reading stored results back: summary tables for reporters, and the regression gate of ``ecgbench compare``."""
