"""EfficientNet-L2, the Noisy Student backbone the paper's best PASCAL model uses (Table 6).

Model Garden's EfficientNet builder reads its compound scaling from `efficientnet.SCALING_MAP`,
which stops at B7. L2 is the same network scaled to width 4.3 and depth 5.3 (Xie et al.,
"Self-training with Noisy Student", Table 7). Adding that row to Model Garden's own table
makes `backbones.EfficientNet(model_id='l2')` build through the registered `efficientnet`
backbone builder, so configs, checkpoints and export treat it like any other EfficientNet.
"""

from official.vision.modeling.backbones import efficientnet

L2_SCALING = dict(width_scale=4.3, depth_scale=5.3)


def register() -> None:
  """Adds 'l2' to Model Garden's EfficientNet scaling table (idempotent)."""
  existing = efficientnet.SCALING_MAP.setdefault('l2', L2_SCALING)
  if existing != L2_SCALING:
    raise ValueError(f"efficientnet.SCALING_MAP['l2'] is already {existing}, not {L2_SCALING}")


register()
