"""Semantic segmentation: Model Garden's task with the paper's augmentation on image and mask.

`SegmentationTask` is the supervised task (teacher, controls) registered for
`configs.segmentation.SegmentationTask`: Model Garden's `SemanticSegmentationTask` whose
training data go through `dataloaders/segmentation_input.AugmentingParser` (the policy of
`train_data.aug_type` on image and mask, then Model Garden's flip and scale jitter). The
student is `tasks/segmentation_student.py`. Losses and evaluation (mean IoU over the 21
classes) are the official task's.
"""

from typing import Optional

import tensorflow as tf

from official.common import dataset_fn
from official.core import task_factory
from official.vision.dataloaders import input_reader
from official.vision.dataloaders import input_reader_factory
from official.vision.dataloaders import segmentation_input
from official.vision.dataloaders import tfds_factory
from official.vision.tasks import semantic_segmentation

from projects.self_training.configs import segmentation as seg_cfg
from projects.self_training.dataloaders import segmentation_input as seg_input


@task_factory.register_task_cls(seg_cfg.SegmentationTask)
class SegmentationTask(semantic_segmentation.SemanticSegmentationTask):
  """Model Garden's segmentation task; training data through `AugmentingParser`."""

  def build_inputs(self, params, input_context: Optional[tf.distribute.InputContext] = None):
    """Model Garden's `build_inputs` with `AugmentingParser` in place of its parser.

    Model Garden builds its parser inside `build_inputs` (there is no parser hook), so
    this is its input pipeline, argument for argument, with the parser swapped, as Model
    Garden's own projects override `build_inputs` to swap theirs.
    `tests/test_segmentation.py` checks that without a policy it yields exactly the
    batches of Model Garden's `build_inputs`.
    """
    losses = self.task_config.losses
    if params.tfds_name:
      decoder = tfds_factory.get_segmentation_decoder(params.tfds_name)
    else:
      decoder = segmentation_input.Decoder(
          image_feature=params.image_feature,
          additional_dense_features=params.additional_dense_features)
    parser = seg_input.AugmentingParser(
        aug_type=params.aug_type if params.is_training else None,
        output_size=params.output_size, crop_size=params.crop_size,
        ignore_label=losses.ignore_label, resize_eval_groundtruth=params.resize_eval_groundtruth,
        gt_is_matting_map=losses.gt_is_matting_map,
        groundtruth_padded_size=params.groundtruth_padded_size,
        aug_scale_min=params.aug_scale_min, aug_scale_max=params.aug_scale_max,
        aug_rand_hflip=params.aug_rand_hflip, preserve_aspect_ratio=params.preserve_aspect_ratio,
        dtype=params.dtype, image_feature=params.image_feature,
        additional_dense_features=params.additional_dense_features,
        centered_crop=params.centered_crop)
    reader = input_reader_factory.input_reader_generator(
        params, dataset_fn=dataset_fn.pick_dataset_fn(params.file_type),
        decoder_fn=decoder.decode, combine_fn=input_reader.create_combine_fn(params),
        parser_fn=parser.parse_fn(params.is_training))
    return reader.read(input_context=input_context)
