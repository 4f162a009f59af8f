"""Joint training (paper Table 7) as a Model Garden task: RetinaNet + a classifier.

Model Garden's multitask module (`official/modeling/multitask`) fits only in part: its
`joint_train_step` calls `build_losses(labels, outputs)` positionally, while
`RetinaNetTask.build_losses` takes `(outputs, labels)`, and it drops the models'
regularization losses. So the joint model is the official RetinaNet with a classifier
attached to its backbone (saved with every checkpoint), and one train step computes both
losses: L = L_det + w * L_cls + regularization. The detection half is the RetinaNet loss
of `tasks/detection.py` (the official loss, its focal term fused); evaluation and export
are the official detector's.
"""

from typing import Any, List, Optional

import tensorflow as tf
import tf_keras

from official.core import task_factory
from official.vision.configs import image_classification as ic_cfg
from official.vision.tasks import image_classification

from projects.self_training.configs import joint as joint_cfg
from projects.self_training.modeling import features
from projects.self_training.tasks import detection
from projects.self_training.tasks import retinanet_student
from projects.self_training.tasks import self_training

CLASSIFIER_ATTR = 'joint_classifier'
JOINT_METRICS = ('detection_loss', 'classification_loss', 'classification_accuracy')


@task_factory.register_task_cls(joint_cfg.JointTrainingRetinaNetTask)
class JointTrainingRetinaNetTask(detection.RetinaNetTask):
  """RetinaNet trained on detection and classification batches at once."""

  def build_model(self) -> tf_keras.Model:
    model = super().build_model()
    config = self.task_config
    l2 = config.losses.l2_weight_decay
    setattr(model, CLASSIFIER_ATTR, tf_keras.layers.Dense(
        config.classification_num_classes, name='joint_classifier',
        kernel_regularizer=tf_keras.regularizers.l2(l2 / 2.0) if l2 else None))
    size = self.classification_image_size()
    getattr(model, CLASSIFIER_ATTR)(
        features.pooled_features(model.backbone, tf.zeros([1, size, size, 3])))
    return model

  def classification_image_size(self) -> int:
    """The detector's input size: Model Garden builds the backbone for that size only, so
    classification images are resized to it (the 64-px iconic images are upscaled)."""
    return self.task_config.model.input_size[0]

  def _classification_task(self) -> image_classification.ImageClassificationTask:
    config = self.task_config
    size = self.classification_image_size()
    return image_classification.ImageClassificationTask(ic_cfg.ImageClassificationTask(
        model=ic_cfg.ImageClassificationModel(
            num_classes=config.classification_num_classes, input_size=[size, size, 3]),
        train_data=config.classification_data))

  def build_inputs(self, params, input_context: Optional[tf.distribute.InputContext] = None):
    """(detection batch, classification batch) pairs for training; the official otherwise."""
    detection = super().build_inputs(params, input_context)
    if not self_training.is_train_data(self.task_config, params):
      return detection
    data = self.task_config.classification_data
    if not data.input_path and not data.tfds_name:
      raise ValueError('task.classification_data.input_path is empty: point it at the '
                       'classification TFRecords (the iconic shards)')
    classification = self._classification_task().build_inputs(data, input_context)
    return tf.data.Dataset.zip((detection, classification))

  def build_metrics(self, training: bool = True) -> List[Any]:
    metrics = super().build_metrics(training)
    if training:
      metrics += [tf_keras.metrics.Mean(name, dtype=tf.float32) for name in JOINT_METRICS]
    return metrics

  def classification_loss(self, model, classification, training=True):
    """(L_cls, accuracy) of one classification batch through the shared backbone."""
    cls_images, cls_labels = classification
    logits = tf.cast(getattr(model, CLASSIFIER_ATTR)(
        features.pooled_features(model.backbone, cls_images, training=training)), tf.float32)
    num_classes = self.task_config.classification_num_classes
    class_loss = tf.reduce_mean(tf_keras.losses.categorical_crossentropy(
        tf.one_hot(cls_labels, num_classes), logits, from_logits=True,
        label_smoothing=self.task_config.classification_label_smoothing))
    accuracy = tf.reduce_mean(tf.cast(tf.equal(
        tf.argmax(logits, -1, output_type=tf.int32), tf.cast(cls_labels, tf.int32)),
                                      tf.float32))
    return class_loss, accuracy

  def joint_losses(self, model, detection, classification, training=True):
    """(L_det, L_cls, classification accuracy, detection loss parts) of one pair of batches."""
    images, labels = detection
    outputs = tf.nest.map_structure(lambda x: tf.cast(x, tf.float32),
                                    model(images, training=training))
    _, cls_loss, box_loss, det_loss = self.build_losses(outputs=outputs, labels=labels,
                                                        aux_losses=None)
    class_loss, accuracy = self.classification_loss(model, classification, training)
    return det_loss, class_loss, accuracy, {'cls_loss': cls_loss, 'box_loss': box_loss}

  def train_step(self, inputs, model, optimizer, metrics=None):
    detection, classification = inputs
    with tf.GradientTape() as tape:
      det_loss, class_loss, accuracy, parts = self.joint_losses(model, detection,
                                                                classification)
      loss = det_loss + self.task_config.classification_weight * class_loss
      if model.losses:
        loss += tf.add_n(model.losses)
      scaled_loss = self_training.scale_loss(loss, optimizer)
    self_training.apply_scaled_gradients(tape, scaled_loss, model, optimizer)
    values = dict(parts, total_loss=loss, model_loss=det_loss, detection_loss=det_loss,
                  classification_loss=class_loss, classification_accuracy=accuracy)
    return self_training.update_metrics(metrics, values, {self.loss: loss})


@task_factory.register_task_cls(joint_cfg.SelfTrainingJointRetinaNetTask)
class SelfTrainingJointRetinaNetTask(retinanet_student.SelfTrainingRetinaNetTask,
                                     JointTrainingRetinaNetTask):
  """Table 7's last column: the student's step plus joint training's classification loss,
  L = L_norm(L_h, L_p) + w * L_cls, on (human, classification) and pseudo batches.

  The bases compose through the MRO: the student's `build_inputs` zips its pseudo batches
  onto what the joint task reads for `train_data` (detection and classification batches).
  """

  def train_step(self, inputs, model, optimizer, metrics=None):
    (human, classification), pseudo = inputs
    values = {}

    def classification_term(model):
      loss, accuracy = self.classification_loss(model, classification)
      values.update(classification_loss=loss, classification_accuracy=accuracy)
      return self.task_config.classification_weight * loss

    return self.student_step((human, pseudo), model, optimizer, metrics,
                             classification_term, values)
