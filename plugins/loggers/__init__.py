"""Built-in experiment loggers (enabled per suite or with ``ecgbench run --log NAME``)."""
