#!/usr/bin/env bash
# The main job on shipped data, about 9 minutes on 2 cores after the build: build the knowledge-graph teacher
# (node-name embeddings, graph transformer, TransR over the biomedical KG; short epochs), train a
# KoGNER student on NCBI-disease from the pretrained all-MiniLM-L6-v2 encoder, distilling the
# teacher into the spans whose concept ids are KG nodes, score it on the test split, then find
# entities in a sentence. Needs only the Rust toolchain and ../shared beside the repository.
set -euo pipefail
cd "$(dirname "$0")"
DATA=../shared/data
RUN=${RUN:-runs/quickstart}
STEPS=${STEPS:-300}
TEACHER=${TEACHER:-runs/teacher.safetensors}
cargo build --release -q -p kogner-cli
K=target/release/kogner
rm -rf "$RUN"
set -x
[ -f "$TEACHER" ] || $K teacher --kg $DATA/kg/biomed --out "$TEACHER" --sampled --graph-epochs 1 --transr-epochs 1
$K train --encoder $DATA/models/all-MiniLM-L6-v2 --teacher "$TEACHER" \
  --train $DATA/ner/ncbi-disease/pubtator/NCBItrainset_corpus.txt --train-format pubtator --labels ncbi-disease \
  --steps "$STEPS" --batch-size 8 --lr-encoder 5e-5 --lr-head 5e-4 --out "$RUN"
$K eval --model "$RUN/best" --data $DATA/ner/ncbi-disease/iob/test.tsv --format iob
$K predict --model "$RUN/best" --labels disease \
  "Mutations in BRCA1 cause hereditary breast and ovarian cancer, while APC mutations lead to familial adenomatous polyposis."
