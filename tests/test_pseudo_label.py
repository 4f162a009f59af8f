"""Export and pseudo-labeling: one input path from export to labels, threshold, schema round
trip, sharding, resume after a kill, bad inputs."""

import io
import json
import os
import subprocess
import sys

import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

from official.core import task_factory
from official.vision.dataloaders import tf_example_decoder
from projects.self_training.common import trainer
from projects.self_training.data import emoji_scenes
from projects.self_training.pseudo_label import fusion
from projects.self_training.pseudo_label import records
from projects.self_training.pseudo_label import schema
from projects.self_training.pseudo_label import shards
from projects.self_training.pseudo_label.teacher import LabelerError
from projects.self_training.pseudo_label.teacher import Teacher
from projects.self_training.serving import export

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ('task.model.input_size=[64,64,3],task.validation_data.global_batch_size=4,'
        'task.train_data.global_batch_size=4')


@pytest.fixture(scope='module')
def pool(tmp_path_factory):
  out = str(tmp_path_factory.mktemp('data') / 'scenes')
  emoji_scenes.generate(out, image_size=64, num_val=4, num_unlabeled=10,
                        splits=('val', 'unlabeled_scenes'), num_workers=1)
  return out


@pytest.fixture(scope='module')
def exported(pool, tmp_path_factory):
  """A randomly initialized tiny detector, checkpointed and exported."""
  params = trainer.build_params('emoji_retinanet', params_override=(
      f'{TINY},task.annotation_file={emoji_scenes.annotation_file(pool, "val")}'))
  model = task_factory.get_task(params.task).build_model()
  model(tf.zeros([1, 64, 64, 3]), training=False)
  # Random init scores every anchor ~0.01, under the detector's 0.05 pre-NMS floor, and
  # its head features are tiny: large random head weights give distinct, well-separated
  # detections that depend on the image.
  rng = np.random.default_rng(0)
  for v in model.head.trainable_variables:
    if 'kernel' in v.name:
      std = 20.0 if 'scores' in v.name else np.sqrt(2.0 / np.prod(v.shape[:-1]))
      v.assign(rng.normal(0, std, v.shape).astype(np.float32))
    elif 'scores/bias' in v.name:
      v.assign(np.full(v.shape, -2.0, np.float32))
  base = tmp_path_factory.mktemp('teacher')
  ckpt = tf.train.Checkpoint(model=model).save(str(base / 'ckpt'))
  path = export.export_detector(params, ckpt, str(base / 'export'))
  return params, model, path


class FakeTeacher:
  """Deterministic outputs from pixel statistics; can be told to die mid-shard."""
  path = 'fake'
  task = 'detection'
  ignore_label = 255
  categories = [{'id': 1, 'name': 'person'}, {'id': 18, 'name': 'dog'}]

  def __init__(self, die_after_calls=None):
    self.calls = 0
    self.die_after_calls = die_after_calls

  def __call__(self, images):
    self.calls += 1
    if self.die_after_calls is not None and self.calls > self.die_after_calls:
      raise KeyboardInterrupt('simulated kill')
    n = len(images)
    m = images.reshape(n, -1).mean(axis=1) / 255.0
    boxes = np.zeros((n, 3, 4), np.float32)
    boxes[:, 0] = [0.1, 0.2, 0.5, 0.6]
    boxes[:, 1] = [0.3, 0.3, 0.9, 0.8]
    boxes[:, 2] = [0.0, 0.0, 1.0, 1.0]
    scores = np.stack([m, 1.0 - m, np.full(n, 0.2)], axis=1).astype(np.float32)
    return {'detection_boxes': boxes, 'detection_scores': scores,
            'detection_classes': np.tile(np.array([[1, 18, 1]], np.float32), (n, 1)),
            'num_detections': np.full(n, 3, np.int32)}


def _records(pattern):
  out = []
  for f in sorted(tf.io.gfile.glob(pattern)):
    out += [r.numpy() for r in tf.data.TFRecordDataset(f)]
  return out


def test_keep_applies_the_threshold_inclusively():
  out = {'detection_boxes': np.array([[[0, 0, .5, .5], [0, 0, .4, .4], [.2, .2, .2, .6]]]),
         'detection_scores': np.array([[0.5, 0.49, 0.9]]),
         'detection_classes': np.array([[3, 4, 5]]), 'num_detections': np.array([3])}
  boxes, classes, scores = fusion.keep(out, 0, 0.5)
  # 0.5 is kept, 0.49 is not, and the zero-height box is dropped whatever its score.
  assert classes.tolist() == [3] and scores.tolist() == [0.5]


def test_keep_drops_classes_the_label_map_does_not_declare():
  # A model over sparse ids (3, 17, 42: num_classes 43) has outputs for ids 4..16 too.
  out = {'detection_boxes': np.array([[[0, 0, .5, .5], [.5, .5, .9, .9], [.1, .6, .3, .9]]]),
         'detection_scores': np.array([[0.9, 0.8, 0.4]]),
         'detection_classes': np.array([[17, 5, 6]]), 'num_detections': np.array([3])}
  _, classes, _ = fusion.keep(out, 0, 0.5, ignore_threshold=0.3, declared=[3, 17, 42])
  assert classes.tolist() == [17]  # neither the sure class-5 box nor an ignore region of 6
  _, classes, _ = fusion.keep(out, 0, 0.5, ignore_threshold=0.3)
  assert classes.tolist() == [17, 5, schema.IGNORE_CLASS]


def test_ignore_threshold_marks_uncertain_boxes():
  # Kept (0.8); uncertain and elsewhere (0.3): ignore; below the ignore threshold (0.1);
  # uncertain on the kept object with another class (0.4, IoU 0.64): a duplicate, dropped.
  out = {'detection_boxes': np.array([[[0, 0, .5, .5], [.6, .6, .9, .9], [.1, .1, .3, .3],
                                       [0, 0, .4, .4]]]),
         'detection_scores': np.array([[0.8, 0.3, 0.1, 0.4]]),
         'detection_classes': np.array([[3, 4, 5, 6]]), 'num_detections': np.array([4])}
  boxes, classes, scores = fusion.keep(out, 0, 0.5, ignore_threshold=0.2)
  assert classes.tolist() == [3, schema.IGNORE_CLASS]
  np.testing.assert_allclose(scores, [0.8, 0.3], rtol=1e-6)
  np.testing.assert_allclose(boxes[1], [.6, .6, .9, .9], rtol=1e-6)
  # Without a kept box to duplicate, the same uncertain box is an ignore region.
  alone = dict(out, detection_scores=np.array([[0.45, 0.3, 0.1, 0.4]]))
  _, classes, _ = fusion.keep(alone, 0, 0.5, ignore_threshold=0.2)
  assert classes.tolist() == [schema.IGNORE_CLASS] * 3
  labeled = records.Labeled('1', b'', 10, 10, boxes, np.array([3, schema.IGNORE_CLASS]),
                            scores)
  _, anns = labeled.coco(1, 1)
  assert [a['category_id'] for a in anns] == [3]  # ignore boxes stay out of the COCO JSON


def test_box_iou():
  a = np.array([[0, 0, .5, .5], [0, 0, 1, 1]])
  b = np.array([[0, 0, .4, .4], [.6, .6, .9, .9]])
  np.testing.assert_allclose(fusion.box_iou(a, b), [[.64, 0], [.16, .09]], rtol=1e-6)


def test_fuse_views_by_hand():
  # View 0 sees object A (class 3) at 0.8 and object B (class 4) at 0.6; view 1 sees A
  # shifted at 0.4, another class on A at 0.3, and a 0.04 box (under FUSE_MIN_SCORE).
  v0 = {'detection_boxes': np.array([[[0, 0, .5, .5], [.6, .6, .9, .9], [0, 0, 0, 0]]]),
        'detection_scores': np.array([[0.8, 0.6, 0.0]]),
        'detection_classes': np.array([[3, 4, 0]]), 'num_detections': np.array([2])}
  v1 = {'detection_boxes': np.array([[[0, 0, .5, .6], [0, 0, .5, .5], [.1, .1, .2, .2]]]),
        'detection_scores': np.array([[0.4, 0.3, 0.04]]),
        'detection_classes': np.array([[3, 5, 3]]), 'num_detections': np.array([3])}
  out = fusion.fuse_views([v0, v1])
  n = int(out['num_detections'][0])
  assert n == 3 and out['detection_scores'].shape == (1, 3)
  # A: both views, (0.8 + 0.4) / 2, box the score-weighted mean; B: one view, 0.6 / 2;
  # the other class on A: 0.3 / 2. Sorted by fused score.
  np.testing.assert_allclose(out['detection_scores'][0, :n], [0.6, 0.3, 0.15], rtol=1e-6)
  assert out['detection_classes'][0, :n].tolist() == [3, 4, 5]
  np.testing.assert_allclose(out['detection_boxes'][0, 0], [0, 0, .5, (.5 * .8 + .6 * .4) / 1.2],
                             rtol=1e-6)
  np.testing.assert_allclose(out['detection_boxes'][0, 1], [.6, .6, .9, .9], rtol=1e-6)


@pytest.mark.slow
def test_flip_and_sizes_views_of_the_exported_teacher(exported, tmp_path):
  """Labeling an image's mirror with flip TTA gives the image's labels mirrored; a second
  input size is a second SavedModel of the same detector."""
  params, _, path = exported
  teacher = Teacher(path, flip=True)
  assert teacher.num_views == 2
  rng = np.random.default_rng(1)
  image = rng.integers(0, 255, (1, 64, 64, 3), dtype=np.uint8)
  a = teacher(image)
  b = teacher(np.ascontiguousarray(image[:, :, ::-1]))
  assert int(a['num_detections'][0]) == int(b['num_detections'][0]) > 0
  n = int(a['num_detections'][0])
  np.testing.assert_allclose(np.sort(a['detection_scores'][0, :n]),
                             np.sort(b['detection_scores'][0, :n]), atol=1e-5)
  mirrored = b['detection_boxes'][0, :n][:, [0, 3, 2, 1]] * [1, -1, 1, -1] + [0, 1, 0, 1]
  def canonical(boxes):
    return boxes[np.lexsort(np.round(boxes, 4).T[::-1])]
  np.testing.assert_allclose(canonical(a['detection_boxes'][0, :n]), canonical(mirrored),
                             atol=1e-4)
  # Another input size: saved_model_96 beside saved_model, the same label map.
  base = os.path.dirname(path)
  checkpoint = json.loads(tf.io.gfile.GFile(os.path.join(path, export.LABEL_MAP)).read())[
      'checkpoint']
  big = export.export_detector(params, checkpoint, base, input_size=96)
  assert big == os.path.join(base, 'saved_model_96')
  both = Teacher(f'{path},{big}', flip=True)
  assert both.num_views == 4
  assert int(both(image)['num_detections'][0]) > 0
  # Another label map is refused in one line.
  other = tmp_path / 'other'
  subprocess.run(['cp', '-r', big, str(other)], check=True)
  label_map = other / export.LABEL_MAP
  label_map.write_text(json.dumps({'categories': [{'id': 1, 'name': 'cat'}]}))
  with pytest.raises(LabelerError, match='another label map'):
    Teacher(f'{path},{other}')


def test_records_round_trip_through_model_gardens_decoder():
  labeled = records.Labeled('42', _jpeg(np.full((40, 80, 3), 90, np.uint8)), 40, 80,
                            boxes=np.array([[0.1, 0.2, 0.5, 0.9]], np.float32),
                            classes=np.array([18]), scores=np.array([0.75], np.float32))
  decoded = tf_example_decoder.TfExampleDecoder().decode(tf.constant(labeled.example()))
  # Model Garden's boxes are normalized [ymin, xmin, ymax, xmax], as the labeler writes them.
  np.testing.assert_allclose(decoded['groundtruth_boxes'].numpy(), [[0.1, 0.2, 0.5, 0.9]],
                             rtol=1e-6)
  assert decoded['groundtruth_classes'].numpy().tolist() == [18]
  assert decoded['source_id'].numpy() == b'42'
  assert decoded['image'].shape == (40, 80, 3)
  image, anns = labeled.coco(42, 1)
  # COCO boxes are [x, y, width, height] in pixels of the original image.
  assert anns[0]['bbox'] == pytest.approx([16.0, 4.0, 56.0, 16.0])
  assert image == {'id': 42, 'height': 40, 'width': 80}


def _jpeg(pixels):
  out = io.BytesIO()
  Image.fromarray(pixels).save(out, format='JPEG', quality=95)
  return out.getvalue()


@pytest.mark.slow
def test_export_matches_the_training_eval_path(pool, exported):
  """The SavedModel on uint8 and on encoded images gives the task's own eval detections."""
  params, model, path = exported
  saved = tf.saved_model.load(path)
  assert set(saved.signatures) >= {'serving_default', 'serving_bytes'}
  labels = json.loads(tf.io.gfile.GFile(os.path.join(path, export.LABEL_MAP)).read())
  assert {'id': 1, 'name': 'person'} in labels['categories']

  task = task_factory.get_task(params.replace(task={'validation_data': {
      'input_path': emoji_scenes.split_pattern(pool, 'val')}}).task)
  images, info = next(iter(task.build_inputs(task.task_config.validation_data)))
  ref = model(images, anchor_boxes=info['anchor_boxes'],
              image_shape=info['image_info'][:, 1, :], training=False)
  raw = [r.numpy() for r in tf.data.TFRecordDataset(
      tf.io.gfile.glob(emoji_scenes.split_pattern(pool, 'val')))][:4]
  encoded = [tf.io.parse_single_example(r, {'image/encoded': tf.io.FixedLenFeature(
      (), tf.string)})['image/encoded'] for r in raw]
  pixels = tf.stack([tf.io.decode_jpeg(e, channels=3) for e in encoded])
  by_pixels = saved.signatures['serving_default'](inputs=pixels)
  by_bytes = saved.signatures['serving_bytes'](inputs=tf.stack(encoded))
  size = float(pixels.shape[1])
  scale = info['image_info'][:, 2, :][:, None, :].numpy()  # resized / original
  want = ref['detection_boxes'].numpy() / np.tile(scale, [1, 1, 2]) / size
  assert (ref['detection_scores'].numpy() > 0.3).sum() >= 4  # a non-trivial comparison
  np.testing.assert_allclose(by_pixels['detection_scores'].numpy(),
                             ref['detection_scores'].numpy(), atol=1e-5)
  # Detections with tied scores may come out of NMS in either order, or as different boxes
  # among the tied ones, on the two paths. Above a score floor, every detection of one path
  # must be a detection of the other: the same score and the same box.
  def same_detections(scores, boxes, want_scores, want_boxes, floor=0.05):
    for s, b, ws, wb in zip(scores, boxes, want_scores, want_boxes):
      kept = s > floor
      assert kept.sum() == (ws > floor).sum()
      for score, box in zip(s[kept], b[kept]):
        tied = np.abs(ws - score) <= 1e-5
        assert np.any(np.all(np.abs(wb[tied] - box) <= 1e-4, axis=-1)), (score, box)
  same_detections(by_pixels['detection_scores'].numpy(), by_pixels['detection_boxes'].numpy(),
                  ref['detection_scores'].numpy(), np.clip(want, 0, 1))
  np.testing.assert_allclose(by_bytes['detection_scores'].numpy(),
                             by_pixels['detection_scores'].numpy(), atol=1e-6)
  same_detections(by_bytes['detection_scores'].numpy(), by_bytes['detection_boxes'].numpy(),
                  by_pixels['detection_scores'].numpy(), by_pixels['detection_boxes'].numpy())


@pytest.mark.slow
def test_labeler_on_the_exported_teacher_is_deterministic(pool, exported, tmp_path):
  _, _, path = exported
  source = emoji_scenes.split_pattern(pool, 'unlabeled_scenes')
  a = shards.run(path, source, str(tmp_path / 'a'), threshold=0.0, num_shards=2,
                 progress=False)
  b = shards.run(path, source, str(tmp_path / 'b'), threshold=0.0, num_shards=2,
                 progress=False)
  assert a['num_images'] == 10 and a['num_boxes'] > 0
  assert _records(schema.record_pattern(str(tmp_path / 'a'))) == _records(
      schema.record_pattern(str(tmp_path / 'b')))
  coco = json.loads((tmp_path / 'a' / schema.COCO_JSON).read_text())
  assert len(coco['annotations']) == a['num_boxes']
  assert coco['categories'][0] == {'id': 1, 'name': 'person'}


def test_kill_mid_run_then_resume_equals_an_uninterrupted_run(pool, tmp_path):
  source = emoji_scenes.split_pattern(pool, 'unlabeled_scenes')
  whole = shards.run('fake', source, str(tmp_path / 'whole'), num_shards=3, batch_size=2,
                     progress=False, teacher=FakeTeacher())
  out = str(tmp_path / 'killed')
  with pytest.raises(KeyboardInterrupt):
    shards.run('fake', source, out, num_shards=3, batch_size=2, progress=False,
               teacher=FakeTeacher(die_after_calls=3))
  # Shard 0 (2 calls) finished; shard 1 died: nothing of it is left under a final name.
  names = sorted(os.listdir(out))
  assert names == ['pseudo-00000-of-00003.json', 'pseudo-00000-of-00003.tfrecord']
  assert not os.path.exists(os.path.join(out, schema.SUMMARY))
  resumed_teacher = FakeTeacher()
  resumed = shards.run('fake', source, out, num_shards=3, batch_size=2, progress=False,
                       teacher=resumed_teacher)
  assert resumed_teacher.calls == 4  # shards 1 and 2 only (3 + 3 images, batches of 2)
  assert _records(schema.record_pattern(out)) == _records(
      schema.record_pattern(str(tmp_path / 'whole')))
  assert resumed['num_images'] == whole['num_images'] == 10
  assert resumed['num_boxes'] == whole['num_boxes']


def test_one_worker_per_shard_then_merge(pool, tmp_path):
  source = emoji_scenes.split_pattern(pool, 'unlabeled_scenes')
  out = str(tmp_path / 'workers')
  first = shards.run('fake', source, out, num_shards=2, shard_index=1, progress=False,
                     teacher=FakeTeacher())
  assert first == {'complete': False, 'output_dir': out}
  summary = shards.run('fake', source, out, num_shards=2, shard_index=0, progress=False,
                       teacher=FakeTeacher())
  assert summary['num_images'] == 10
  ids = [i['id'] for i in json.loads(open(os.path.join(out, schema.COCO_JSON)).read())['images']]
  assert len(set(ids)) == 10
  # Fake scores: m and 1 - m for the two boxes, 0.2 for the third: exactly one of the
  # first two passes 0.5 unless m == 0.5; the third never does.
  assert summary['num_boxes'] == 10 and summary['num_empty_images'] == 0
  assert sum(summary['boxes_per_class'].values()) == 10
  assert set(summary['boxes_per_class']) <= {'person', 'dog'}


def test_corrupt_and_odd_images_in_a_folder(tmp_path):
  folder = tmp_path / 'photos'
  folder.mkdir()
  rgb = np.random.default_rng(0).integers(0, 255, (30, 40, 3), dtype=np.uint8)
  (folder / 'a.jpg').write_bytes(_jpeg(rgb))
  Image.fromarray(np.dstack([rgb, np.full((30, 40), 128, np.uint8)])).save(folder / 'b.png')
  Image.fromarray(rgb[..., 0]).save(folder / 'c_gray.png')
  (folder / 'd_truncated.jpg').write_bytes(_jpeg(rgb)[:200])
  (folder / 'e_notes.txt').write_text('not an image')
  summary = shards.run('fake', str(folder), str(tmp_path / 'out'), progress=False,
                       teacher=FakeTeacher())
  assert summary['num_images'] == 3 and summary['num_skipped'] == 2
  skipped = {os.path.basename(s['input']) for s in summary['skipped']}
  assert skipped == {'d_truncated.jpg', 'e_notes.txt'}
  assert all(s['source_id'] and s['reason'] for s in summary['skipped'])
  decoder = tf_example_decoder.TfExampleDecoder()
  for record in _records(schema.record_pattern(str(tmp_path / 'out'))):
    assert decoder.decode(tf.constant(record))['image'].shape[-1] == 3


@pytest.mark.slow
def test_missing_saved_model_or_input_is_a_one_line_error(pool, tmp_path):
  with pytest.raises(LabelerError, match='input not found'):
    shards.run(str(tmp_path / 'none'), str(tmp_path / 'missing-*.tfrecord'), str(tmp_path))
  with pytest.raises(LabelerError, match='no SavedModel'):
    shards.run(str(tmp_path / 'none'), emoji_scenes.split_pattern(pool, 'unlabeled_scenes'),
               str(tmp_path / 'o'))
  with pytest.raises(LabelerError, match='shard_index'):
    shards.run('x', 'y', str(tmp_path), num_shards=2, shard_index=2)
  env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL='3')
  proc = subprocess.run(
      [sys.executable, '-m', 'projects.self_training.pseudo_label.labeler',
       f'--saved_model={tmp_path}/none', f'--input={tmp_path}/nothing-*.tfrecord',
       f'--output_dir={tmp_path}/out'], capture_output=True, text=True, env=env, cwd=ROOT,
      timeout=300)
  assert proc.returncode == 2
  assert proc.stderr.strip().splitlines()[-1].startswith('error: input not found')


def test_pseudo_label_precision_recall_on_hand_made_boxes():
  from projects.self_training.pseudo_label import quality
  human = {'annotations': [
      {'image_id': 1, 'category_id': 3, 'bbox': [0, 0, 10, 10]},
      {'image_id': 1, 'category_id': 5, 'bbox': [50, 50, 20, 20]},
      {'image_id': 2, 'category_id': 3, 'bbox': [0, 0, 10, 10]}]}
  pseudo = {'images': [{'id': 1}, {'id': 2}], 'annotations': [
      {'image_id': 1, 'category_id': 3, 'bbox': [1, 1, 10, 10], 'score': 0.9},   # IoU 0.68
      {'image_id': 1, 'category_id': 3, 'bbox': [0, 0, 10, 9], 'score': 0.55},   # duplicate
      {'image_id': 1, 'category_id': 7, 'bbox': [50, 50, 20, 20], 'score': 0.6},  # wrong class
      {'image_id': 2, 'category_id': 3, 'bbox': [6, 6, 10, 10], 'score': 0.7}]}  # IoU 0.09
  low, high = quality.precision_recall(pseudo, human, [0.5, 0.95])
  assert low['precision'] == pytest.approx(1 / 4)
  assert low['recall'] == pytest.approx(1 / 3)
  assert low['boxes_per_image'] == 2.0 and low['human_boxes_per_image'] == 1.5
  assert low['empty_images'] == 0
  assert high['precision'] is None and high['recall'] == 0.0 and high['empty_images'] == 2


def test_labels_a_tfds_split(tmp_path):
  """`tfds:NAME@SPLIT` sources (here TFDS's mock of mnist: 28x28 grayscale) are labeled too."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  out = str(tmp_path / 'pseudo')
  with tfds.testing.mock_data(num_examples=5, policy=tfds.testing.MockPolicy.USE_CODE):
    summary = shards.run('unused', 'tfds:mnist@test', out, num_shards=2, progress=False,
                         teacher=FakeTeacher())
  assert summary['num_images'] == 5 and summary['num_skipped'] == 0
  coco = json.loads(open(os.path.join(out, schema.COCO_JSON)).read())
  assert sorted(im['id'] for im in coco['images']) == [1, 2, 3, 4, 5]
  assert {(im['height'], im['width']) for im in coco['images']} == {(28, 28)}
  assert len(_records(schema.record_pattern(out))) == 5


def _without_timing(summary):
  return {k: v for k, v in summary.items() if k not in ('seconds', 'images_per_second')}


@pytest.mark.slow
def test_beam_pipeline_equals_the_single_process_labeler(pool, exported, tmp_path):
  from projects.self_training.pseudo_label import beam_labeler  # pylint: disable=g-import-not-at-top
  _, _, path = exported
  # A folder with a corrupt and a non-image file beside real scenes: counted, not fatal.
  folder = tmp_path / 'images'
  folder.mkdir()
  for i, record in enumerate(_records(emoji_scenes.split_pattern(pool, 'unlabeled_scenes'))):
    encoded = tf.train.Example.FromString(record).features.feature['image/encoded']
    (folder / f'{i:02d}.jpg').write_bytes(encoded.bytes_list.value[0])
  (folder / '03_truncated.jpg').write_bytes((folder / '03.jpg').read_bytes()[:100])
  (folder / 'notes.txt').write_text('not an image')
  for source in (emoji_scenes.split_pattern(pool, 'unlabeled_scenes'), str(folder)):
    name = os.path.basename(source)[:6]
    single = shards.run(path, source, str(tmp_path / f'single_{name}'), threshold=0.05,
                        num_shards=3, batch_size=4, progress=False)
    out = str(tmp_path / f'beam_{name}')
    beamed = beam_labeler.run(path, source, out, num_shards=3, threshold=0.05, batch_size=4,
                              beam_args=['--runner=DirectRunner', '--direct_num_workers=2',
                                         '--direct_running_mode=multi_threading'])
    assert single['num_boxes'] > 0
    for shard in range(3):  # record for record, shard for shard
      shard_file = schema.shard_name(shard, 3) + '.tfrecord'
      assert (_records(os.path.join(out, shard_file)) ==
              _records(os.path.join(tmp_path / f'single_{name}', shard_file)))
    assert _without_timing(beamed) == _without_timing(single) | {
        'records': schema.record_pattern(out)}
    assert ((tmp_path / f'single_{name}' / schema.COCO_JSON).read_text() ==
            (tmp_path / f'beam_{name}' / schema.COCO_JSON).read_text())
  assert beamed['num_skipped'] == 2 and beamed['num_images'] == 10
  # A re-run skips complete shards: their records are not rewritten.
  first = os.stat(os.path.join(out, schema.shard_name(0, 3) + '.tfrecord')).st_mtime_ns
  os.remove(os.path.join(out, schema.SUMMARY))
  again = beam_labeler.run(path, str(folder), out, num_shards=3, threshold=0.05, batch_size=4)
  assert os.stat(os.path.join(out, schema.shard_name(0, 3) + '.tfrecord')).st_mtime_ns == first
  assert _without_timing(again) == _without_timing(beamed)


@pytest.mark.slow
def test_beam_command_line_errors_are_one_line(tmp_path):
  env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL='3')
  proc = subprocess.run(
      [sys.executable, '-m', 'projects.self_training.pseudo_label.beam_labeler',
       f'--saved_model={tmp_path}/none', f'--input={tmp_path}/nothing-*.tfrecord',
       f'--output_dir={tmp_path}/out', '--', '--runner=DirectRunner'],
      capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
  assert proc.returncode == 2, proc.stderr[-2000:]
  assert proc.stderr.strip().splitlines()[-1].startswith('error: input not found')
  assert not os.path.exists(tmp_path / 'out')
