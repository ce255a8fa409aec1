"""Built-in ecgbench plugins, registered exactly like third-party ones."""
