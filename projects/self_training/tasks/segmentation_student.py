"""The segmentation student: `SegmentationTask` on human + pseudo-labeled batches.

Mirrors the detection student (`tasks/retinanet_student.py`): each training step reads a
human and a pseudo-labeled batch, computes the official segmentation loss of each half, and
combines them with the paper's loss normalization (`tasks/self_training.SelfTrainingMixin`).
The official loss averages over non-ignored pixels only, so a pixel the pseudo-labeler
marked 255 (top class probability below its threshold) adds nothing to L_p. Evaluation is
the official task's.
"""

from typing import Any, List, Optional

import tensorflow as tf
import tf_keras

from official.core import task_factory

from projects.self_training.configs import segmentation as seg_cfg
from projects.self_training.tasks import self_training
from projects.self_training.tasks import segmentation


# What the pseudo half takes from `pseudo_data`: its records, how many per step and its
# shuffling. The rest (output size, crops, flips, scale jitter, `aug_type`) is the human
# half's, so an override of `train_data` moves both halves, as the paper parses them alike.
PSEUDO_OWN_FIELDS = ('input_path', 'tfds_name', 'tfds_split', 'tfds_data_dir', 'file_type',
                     'global_batch_size', 'seed', 'shuffle_buffer_size', 'cycle_length',
                     'block_length')


def _as_dict(outputs):
  return {'logits': outputs} if isinstance(outputs, tf.Tensor) else outputs


@task_factory.register_task_cls(seg_cfg.SelfTrainingSegmentationTask)
class SelfTrainingSegmentationTask(self_training.SelfTrainingMixin,
                                   segmentation.SegmentationTask):
  """Segmentation with a pseudo-labeled half per batch and the paper's loss normalization."""

  def build_model(self) -> tf_keras.Model:
    return self.attach_normalizer(super().build_model())

  def build_inputs(self, params, input_context: Optional[tf.distribute.InputContext] = None):
    """The human dataset zipped with the pseudo one for training; the parent's otherwise."""
    if not self.is_train_data(params):
      return super().build_inputs(params, input_context)
    return self.zip_pseudo(params, input_context, super().build_inputs)

  def pseudo_data_config(self, pseudo):
    """The human half's data config with the pseudo half's source (`PSEUDO_OWN_FIELDS`)."""
    return self.task_config.train_data.replace(
        **{name: getattr(pseudo, name) for name in PSEUDO_OWN_FIELDS})

  def build_metrics(self, training: bool = True) -> List[Any]:
    metrics = super().build_metrics(training)
    return metrics + self.self_training_metrics() if training else metrics

  def train_step(self, inputs, model, optimizer, metrics=None):
    def half_loss(outputs, labels):
      return self.build_losses(labels=labels, model_outputs=_as_dict(outputs),
                               aux_losses=None), {}

    loss, st_logs, halves = self.self_training_step(inputs, model, optimizer, half_loss)
    names = set(self_training.SELF_TRAINING_METRICS)
    official = [m for m in metrics or [] if m.name not in names]
    logs = {self.loss: loss}
    if official:  # train mean IoU, on the human half
      human = halves['human']
      self.process_metrics(official, human['labels'], _as_dict(human['outputs']))
      logs.update({m.name: m.result() for m in official})
    return self_training.update_metrics(metrics, st_logs, logs)
