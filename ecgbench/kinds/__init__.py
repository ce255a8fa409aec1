"""The base class of each plugin kind: dataset, model, compressor, device profile, reporter, executor, logger."""
