"""SimCLR pre-training (the paper's Table 4 "SimCLR Init") as a Model Garden task.

Subclasses Model Garden's image classification task: its train/validation steps, optimizer
and checkpointing are used as they are; the model, the input (two augmented views per
image, labels unused), the loss (NT-Xent) and the metric (contrastive top-1) are replaced.
The model exposes `backbone` in `checkpoint_items`, so `gin/init/simclr.gin` loads it into
the detector or segmenter like any backbone checkpoint.

Negatives come from the replica's own batch (2N - 2 per view); with many replicas each
replica contrasts within its share of the global batch.
"""

from typing import Any, List, Optional

import tensorflow as tf
import tf_keras

from official.common import dataset_fn
from official.core import task_factory
from official.vision.dataloaders import classification_input
from official.vision.dataloaders import input_reader_factory
from official.vision.modeling import backbones
from official.vision.ops import preprocess_ops
from official.vision.tasks import image_classification

from projects.self_training.configs import pretrain as pretrain_cfg
from projects.self_training.modeling.features import pooled_features


class SimCLRModel(tf_keras.Model):
  """Backbone -> global average pool -> MLP projection, on [batch, 2, H, W, 3] view pairs.

  Returns the L2-normalized projections of the first views, then of the second views:
  [2 * batch, dim].
  """

  def __init__(self, backbone: tf_keras.Model, projection_dims: List[int],
               l2_regularizer=None, **kwargs):
    super().__init__(**kwargs)
    self.backbone = backbone
    layers = []
    for i, dim in enumerate(projection_dims):
      last = i == len(projection_dims) - 1
      layers.append(tf_keras.layers.Dense(dim, use_bias=last, kernel_regularizer=l2_regularizer))
      if not last:
        layers += [tf_keras.layers.BatchNormalization(), tf_keras.layers.ReLU()]
    self.projection = tf_keras.Sequential(layers, name='projection')

  def call(self, views, training=None):
    first_then_second = tf.concat([views[:, 0], views[:, 1]], axis=0)
    z = self.projection(
        pooled_features(self.backbone, first_then_second, training=training), training=training)
    return tf.math.l2_normalize(tf.cast(z, tf.float32), axis=-1)

  @property
  def checkpoint_items(self):
    return dict(backbone=self.backbone)


def nt_xent(z: tf.Tensor, temperature: float):
  """NT-Xent over [2N, d] normalized projections, row i's positive is row (i + N) mod 2N.

  Returns (mean loss, per-row logits with self-similarity masked, positive indices).
  """
  n2 = tf.shape(z)[0]
  n = n2 // 2
  logits = tf.matmul(z, z, transpose_b=True) / temperature
  logits -= tf.eye(n2) * 1e9  # a view is not its own negative
  positives = tf.concat([tf.range(n, n2), tf.range(0, n)], axis=0)
  loss = tf_keras.losses.sparse_categorical_crossentropy(positives, logits, from_logits=True)
  return tf.reduce_mean(loss), logits, positives


class ContrastiveAccuracy(tf_keras.metrics.Mean):
  """The fraction of views whose most similar other view is their pair."""

  def update_from(self, logits, positives):
    hits = tf.cast(tf.equal(tf.argmax(logits, axis=-1, output_type=tf.int32), positives),
                   tf.float32)
    return super().update_state(hits)


@task_factory.register_task_cls(pretrain_cfg.SimCLRPretrainTask)
class SimCLRTask(image_classification.ImageClassificationTask):
  """NT-Xent pre-training of a Model Garden backbone on two augmented views per image."""

  def build_model(self) -> tf_keras.Model:
    config = self.task_config.model
    input_specs = tf_keras.layers.InputSpec(shape=[None] + config.input_size)
    l2 = self.task_config.losses.l2_weight_decay
    regularizer = tf_keras.regularizers.l2(l2 / 2.0) if l2 else None
    backbone = backbones.factory.build_backbone(
        input_specs=input_specs, backbone_config=config.backbone,
        norm_activation_config=config.norm_activation, l2_regularizer=regularizer)
    model = SimCLRModel(backbone, list(self.task_config.simclr.projection_dims), regularizer)
    model(tf.zeros([1, 2] + config.input_size), training=False)
    return model

  def _views(self, decoded, is_training: bool):
    """Two independently augmented views (SimCLR's crop, flip, color): of the example's
    image and its second view where it has one (`simclr.second_view_key`), else both of
    the image, as in SimCLR."""
    del is_training  # held-out pairs are augmented the same way: the metric asks the same
    size = self.task_config.model.input_size[:2]
    s = self.task_config.simclr
    encoded = decoded[classification_input.DEFAULT_IMAGE_FIELD_KEY]
    if s.second_view_key:
      second = decoded[s.second_view_key]
      second = tf.cond(tf.strings.length(second) > 0, lambda: second, lambda: encoded)
    else:
      second = encoded

    def view(encoded):
      image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
      x = preprocess_ops.random_crop_image(image, area_range=tuple(s.crop_area_range), seed=None)
      x = tf.image.resize(x, size)
      x = tf.image.random_flip_left_right(x)
      x = tf.cast(tf.clip_by_value(x, 0, 255), tf.uint8)
      strength = s.color_strength

      def jitter(x):
        x = preprocess_ops.color_jitter(x, 0.8 * strength, 0.8 * strength, 0.8 * strength)
        x = tf.image.random_hue(tf.image.convert_image_dtype(x, tf.float32), 0.2 * strength)
        return tf.image.convert_image_dtype(x, tf.uint8, saturate=True)

      x = tf.cond(tf.random.uniform([]) < 0.8, lambda: jitter(x), lambda: x)
      gray = tf.image.grayscale_to_rgb(tf.image.rgb_to_grayscale(x))
      x = tf.cond(tf.random.uniform([]) < s.grayscale_probability, lambda: gray, lambda: x)
      # As the classifier's and detector's inputs: (pixel - mean) / std in 0..255 units.
      # (normalize_image scales an integer image to [0, 1] first, so cast before.)
      x = preprocess_ops.normalize_image(tf.cast(x, tf.float32), offset=preprocess_ops.MEAN_RGB,
                                         scale=preprocess_ops.STDDEV_RGB)
      return tf.ensure_shape(x, size + [3])

    label = decoded[classification_input.DEFAULT_LABEL_FIELD_KEY]
    return tf.stack([view(encoded), view(second)]), label

  def build_inputs(self, params, input_context: Optional[tf.distribute.InputContext] = None):
    keys = {
        classification_input.DEFAULT_IMAGE_FIELD_KEY:
            tf.io.FixedLenFeature((), tf.string, default_value=''),
        classification_input.DEFAULT_LABEL_FIELD_KEY:
            tf.io.FixedLenFeature((), tf.int64, default_value=-1),
    }
    if self.task_config.simclr.second_view_key:
      keys[self.task_config.simclr.second_view_key] = tf.io.FixedLenFeature(
          (), tf.string, default_value='')
    decoder = classification_input.Decoder(keys_to_features=keys)
    reader = input_reader_factory.input_reader_generator(
        params, dataset_fn=dataset_fn.pick_dataset_fn(params.file_type),
        decoder_fn=decoder.decode,
        parser_fn=lambda decoded: self._views(decoded, params.is_training))
    return reader.read(input_context=input_context)

  def build_losses(self, labels, model_outputs, aux_losses=None) -> tf.Tensor:
    del labels  # self-supervised
    loss, _, _ = nt_xent(model_outputs, self.task_config.simclr.temperature)
    if aux_losses:
      loss += tf.add_n(aux_losses)
    return loss

  def build_metrics(self, training: bool = True) -> List[Any]:
    del training
    return [ContrastiveAccuracy(name='accuracy')]

  def process_metrics(self, metrics, labels, model_outputs, **kwargs):
    del labels, kwargs
    _, logits, positives = nt_xent(model_outputs, self.task_config.simclr.temperature)
    for metric in metrics:
      metric.update_from(logits, positives)
