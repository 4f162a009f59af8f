"""Pooled backbone features, shared by SimCLR, joint training and the linear probe."""

import tensorflow as tf
import tf_keras


def pooled_features(backbone: tf_keras.Model, images, training=False) -> tf.Tensor:
  """Global average of the backbone's last (coarsest) endpoint."""
  endpoints = backbone(images, training=training)
  return tf.reduce_mean(endpoints[max(endpoints, key=int)], axis=[1, 2])
