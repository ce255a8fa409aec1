"""Suite-wide data settings: target sampling rate, crop length, preprocessing, splits."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from ecgbench.kinds.base import PluginConfig


class SplitConfig(PluginConfig):
    """How records are divided into train, validation and test sets."""

    val: float = Field(0.15, ge=0.0, lt=1.0, description="share of each class held out for validation")
    test: float = Field(0.15, ge=0.0, lt=1.0, description="share of each class held out for testing")
    seed: int = Field(0, description="seed of the stratified shuffle (independent of the training seed)")
    file: str | None = Field(
        None,
        description="CSV of 'record,split' rows (split: train, val or test) replacing the random split; relative to the current directory",
    )

    @model_validator(mode="after")
    def _leaves_training_data(self) -> "SplitConfig":
        if self.val + self.test >= 1.0:
            raise ValueError(f"val + test is {self.val + self.test:g}, leaving nothing to train on; keep val + test below 1")
        return self


class DataConfig(PluginConfig):
    """Preprocessing applied to every record, identically in training and in ``ecgbench eval``."""

    fs_hz: float = Field(100.0, gt=0, description="sampling rate records are resampled to, in Hz")
    window_s: float = Field(30.0, gt=0, description="training crop length in seconds; evaluation uses whole records")
    normalize: Literal["zscore", "none"] = Field("zscore", description="per-record normalisation: zero mean, unit variance")
    bandpass_hz: list[float] | None = Field(None, description="[low, high] zero-phase Butterworth band-pass in Hz, e.g. [0.5, 40]")
    on_bad_record: Literal["error", "skip"] = Field(
        "error", description="an unusable record stops loading ('error') or is skipped, warned about and counted ('skip')"
    )
    split: SplitConfig = Field(SplitConfig(), description="train/val/test division")

    @model_validator(mode="after")
    def _bandpass_fits_the_rate(self) -> "DataConfig":
        band = self.bandpass_hz
        if band is None:
            return self
        nyquist = self.fs_hz / 2
        if len(band) != 2 or not 0 < band[0] < band[1] < nyquist:
            raise ValueError(
                f"bandpass_hz must be [low, high] with 0 < low < high < fs_hz/2 = {nyquist:g} Hz, got {band}; "
                "e.g. [0.5, 40], or raise fs_hz"
            )
        return self

    def preprocessing(self) -> dict:
        """The settings that change the preprocessed signals (the cache key; what an exported model carries)."""
        return {"fs_hz": self.fs_hz, "normalize": self.normalize, "bandpass_hz": self.bandpass_hz}
