#!/usr/bin/env bash
# Front door: creates .venv on first use, then runs a subcommand (default: the main job).
set -euo pipefail
cd "$(dirname "$0")"
ROOT="$(pwd)"
VENV="$ROOT/.venv"
PY="$VENV/bin/python"

usage() {
  cat <<'EOF'
Usage: ./run.sh [SUBCOMMAND] [ARGS...]

  (none)        main job: embedded data (cached) -> teacher to its plateau -> export ->
                pseudo labels -> supervised control and student; COCO AP table on val
  custom        the main job on your data: --train_annotations (COCO JSON, VOC or YOLO
                folder) --train_images --unlabeled_images [--val_annotations ...]; see
                docs/your_data.md
  test          run the test suite (pytest on 3 processes; extra ARGS go to pytest, e.g. -n 0)
  data          generate the embedded emoji-scenes data set (flags: --out_dir --seed ...)
  convert       convert real data to TFRecords (coco | images | voc; see --help of each)
  train         Model Garden-style training: --experiment --mode --model_dir [--gin_file ...]
  export        export a trained detector as a SavedModel (--model_dir --export_dir)
  export_segmentation  export a trained segmenter with multi-scale (+flip) inference
  pseudo_label  label unlabeled images with a SavedModel (--saved_model --input --output_dir);
                detection boxes or segmentation masks, as the SavedModel's label map says
  pseudo_label_beam  the same labeling as an Apache Beam pipeline (flags as pseudo_label,
                then -- and Beam's options: --runner=DataflowRunner|FlinkRunner|SparkRunner ...)
  segmentation  segmentation self-training (teacher, pseudo masks, student); mIoU table on voc_val
  pretrain      backbone pre-training on iconic: imagenet | imagenet_plus | simclr (for gin/init)
  convert_checkpoint  public EfficientNet / SimCLR ResNet checkpoint -> Model Garden backbone
  bench         benchmarks: teacher train img/s and tf.data img/s for Augment-S1..S4
  bench_margin  student's margin over the supervised control over several seeds
  bench_overhead  student step vs official step; pseudo-labeler vs bare SavedModel
  bench_seg_scales  segmentation pseudo-labeling img/s at 1 scale vs 6 scales + flip
  bench_seg_margin  segmentation student vs control and train+aug over several seeds
  bench_parallel  teachers side by side (study --jobs) vs one teacher on every core
  bench_plateau   replays plateau rules on whole-schedule held-out histories: where each stops
  bench_stages    s a step of the study's control and student at an augmentation (its time estimate)
  bench_speed   train step of teacher, student, segmenter before/after each speed lever;
                with --runs_dir, a finished main job's stage times
  study         pre-training vs self-training: the paper's Tables 2,3,4,7,10 and App. B at small scale
  compare       metrics JSON of runs side by side, with the paper's and Model Garden's numbers
  report        pseudo-label quality report (PSEUDO_DIR [--reference RECORDS]): figures, warnings
  describe      build every full-scale recipe on CPU: parameters, FLOPs, input size, batch, steps;
                --recipes=FILE: the recipes against the paper's Appendix H, from the configs alone
  dryrun        one training step of a full-scale recipe (EXPERIMENT, a glob or all) on embedded data
  --help        this list
EOF
}

ensure_venv() {
  local stamp="$VENV/.requirements.sha256"
  local want
  want="$(cat requirements.txt requirements-beam.txt | sha256sum | cut -d' ' -f1)"
  if [[ -x "$PY" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    return 0
  fi
  echo "run.sh: installing requirements into .venv (first run only)..." >&2
  [[ -x "$PY" ]] || python3 -m venv "$VENV"
  "$PY" -m pip install --quiet --upgrade pip >&2
  "$PY" -m pip install --quiet -r requirements.txt >&2
  # Beam without its upper pins on pillow/protobuf/pyarrow: see requirements-beam.txt.
  "$PY" -m pip install --quiet --no-deps -r requirements-beam.txt >&2
  echo "$want" > "$stamp"
}

cmd="${1:-main}"
case "$cmd" in
  -h|--help|help) usage; exit 0 ;;
  -*) cmd=main ;;                  # ./run.sh --seed 1 ...: flags of the main job
  *) [[ $# -gt 0 ]] && shift ;;
esac

ensure_venv
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"

case "$cmd" in
  main)     exec "$PY" -m projects.self_training.pipelines.detection_main "$@" ;;
  test)     exec "$PY" -m pytest -q -n 3 --dist loadfile --no-loadscope-reorder "$@" ;;
  custom)   exec "$PY" -m projects.self_training.pipelines.custom_main "$@" ;;
  data)     exec "$PY" -m projects.self_training.data.emoji_scenes "$@" ;;
  convert)  exec "$PY" -m projects.self_training.data.convert "$@" ;;
  train)    exec "$PY" -m projects.self_training.train "$@" ;;
  export)   exec "$PY" -m projects.self_training.serving.export "$@" ;;
  export_segmentation) exec "$PY" -m projects.self_training.serving.export_segmentation "$@" ;;
  pseudo_label) exec "$PY" -m projects.self_training.pseudo_label.labeler "$@" ;;
  pseudo_label_beam) exec "$PY" -m projects.self_training.pseudo_label.beam_labeler "$@" ;;
  segmentation) exec "$PY" -m projects.self_training.pipelines.segmentation_main "$@" ;;
  pretrain) exec "$PY" -m projects.self_training.pipelines.pretrain "$@" ;;
  convert_checkpoint) exec "$PY" -m projects.self_training.tools.convert_checkpoint "$@" ;;
  bench)    exec "$PY" bench/teacher_throughput.py "$@" ;;
  bench_margin) exec "$PY" bench/self_training_margin.py "$@" ;;
  bench_overhead) exec "$PY" bench/self_training_overhead.py "$@" ;;
  bench_seg_scales) exec "$PY" bench/seg_pseudo_label_scales.py "$@" ;;
  bench_seg_margin) exec "$PY" bench/seg_margin.py "$@" ;;
  bench_parallel) exec "$PY" bench/parallel_runs.py "$@" ;;
  bench_plateau) exec "$PY" bench/plateau_rule.py "$@" ;;
  bench_stages) exec "$PY" bench/stage_rates.py "$@" ;;
  bench_speed) exec "$PY" bench/speed.py "$@" ;;
  study)    exec "$PY" -m projects.self_training.study.study "$@" ;;
  compare)  exec "$PY" -m projects.self_training.study.compare "$@" ;;
  report)   exec "$PY" -m projects.self_training.pseudo_label.report "$@" ;;
  describe) exec "$PY" -m projects.self_training.tools.full_scale describe "$@" ;;
  dryrun)   exec "$PY" -m projects.self_training.tools.full_scale dryrun "$@" ;;
  *) echo "run.sh: unknown subcommand '$cmd' (see ./run.sh --help)" >&2; exit 2 ;;
esac
