"""Random unstructured pruning: the control that shows a ticket's mask matters (Frankle & Carbin 2019)."""

import torch
from pydantic import Field

from ecgbench import Compressor, ModelArtifact, PluginConfig, StepOutcome, hookimpl


class RandomPrune(Compressor):
    name = "random_prune"
    description = "prune a random fraction of conv/linear weights, then fine-tune"

    class Config(PluginConfig):
        sparsity: float = Field(0.5, ge=0, lt=1, description="fraction of weights set to zero")
        finetune_epochs: int = Field(1, ge=0)

    def compress(self, artifact, ctx):
        generator = torch.Generator().manual_seed(ctx.seed)
        masks = {
            name: (torch.rand(p.shape, generator=generator) >= self.config.sparsity).float()
            for name, p in artifact.model.named_parameters()
            if name.endswith("weight") and p.dim() > 1
        }
        ctx.trainer.fit(artifact.model, epochs=self.config.finetune_epochs, masks=masks)
        return StepOutcome(ModelArtifact(artifact.model, masks), {"sparsity": self.config.sparsity})


@hookimpl
def ecgbench_register_compressors(register):
    register(RandomPrune)
