#!/bin/sh
# Slim the serving venv (build stage only): what serving never loads goes, so the image stays
# small although label-studio-sdk brings a long tail of dependencies.
#  - the test suites wheels ship inside packages (pandas alone: 46 MB)
#  - pip, setuptools and the SDK's code generator (build-time tools, never imported at run time)
#  - bytecode of modules serving never imports: all __pycache__ goes, then importing what the
#    processes import at start writes bytecode for exactly those modules (the rest compiles in
#    memory on first use, should a rare path need it)
# Checked by scripts/docker_smoke.sh: the image answers /health, an interactive /predict and a
# webhook, and its workers run.
set -eu
site=$(python3 -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
find "$site" -mindepth 2 -depth -type d \( -name tests -o -name test \) -exec rm -rf {} +
for dist in pip setuptools datamodel_code_generator black isort; do
  rm -rf "$site/$dist" "$site"/"$dist"-*.dist-info "$site/_distutils_hack" "$site/distutils-precedence.pth"
done
find "$site" /app -depth -type d -name __pycache__ -exec rm -rf {} +
PYTHONDONTWRITEBYTECODE= python3 -c "
import backend.app, backend.cli, clicksmith.cli, clicksmith.doctor
import review.worker, review.prelabel, review.prelabel_cli, review.ranking, review.corrections
import review.review_cli, review.status_cli
from label_studio_sdk import LabelStudio
import label_studio_sdk.types
from cdnet import load_predictor
load_predictor(backend='onnx')
"
