"""Running suites: cells, the runner, the result store and the content-addressed artifact cache."""
