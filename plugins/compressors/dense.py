"""``dense``: the uncompressed baseline, as a pipeline step that changes nothing."""

from __future__ import annotations

from ecgbench import hookimpl
from ecgbench.kinds.compressor import CompressionContext, Compressor, ModelArtifact, StepOutcome


class Dense(Compressor):
    """Keeps the trained dense model as it is; its row is every table's reference."""

    name = "dense"
    description = "no compression: the trained dense baseline"
    accepts_onnx = True

    def compress(self, artifact: ModelArtifact, ctx: CompressionContext) -> StepOutcome:
        return StepOutcome(artifact, {"changed": False})


@hookimpl
def ecgbench_register_compressors(register):
    register(Dense)
