"""The ``ecgbench`` command line: ``ecgbench.cli.main`` parses, each module beside it adds its subcommands."""
