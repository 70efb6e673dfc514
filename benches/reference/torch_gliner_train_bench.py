#!/usr/bin/env python3
"""Time one PyTorch GLiNER training step (the reference for `kogner train`'s s/step).

Setup (once, any venv):  pip install torch gliner==0.2.29 transformers safetensors
Run:  python torch_gliner_train_bench.py MODEL_DIR TRAIN.tsv [--pool 240] [--batch-size 8] [--threads 2]
MODEL_DIR is any GLiNER folder (e.g. from `kogner init`); TRAIN.tsv an IOB2 file (token TAB tag,
blank line between sentences; `B-Disease` becomes the label "disease"), e.g. NCBI-disease's
`iob/train.tsv`. Its first `--pool` sentences are trained on for two epochs in file order (no
shuffling or length grouping); the second epoch is timed, so the figure covers exactly those
sentences once, whatever the grouping. A step is GLiNER's training step: collate (GLiNER's span
collator, negative types as GLiNER samples them), forward with `reduction="sum"`, backward,
clip_grad_norm(10), AdamW. Prints one JSON line: s/step and sentences/s over the second epoch, and
the process's peak RSS. Compare with `kogner train` on a file of the same sentences for two epochs
(`--steps 2·pool/batch --group-by-length false`; the second epoch's time is the difference of
`elapsed_s` at its last and first step in metrics.jsonl).
"""
import argparse, json, random, resource, time

ap = argparse.ArgumentParser()
ap.add_argument("model")
ap.add_argument("data")
ap.add_argument("--batch-size", type=int, default=8)
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--pool", type=int, default=240)
a = ap.parse_args()

import torch
from gliner import GLiNER

torch.set_num_threads(a.threads)
random.seed(0)
torch.manual_seed(0)


def read_iob(path):
    """The sentences as GLiNER records: tokens and inclusive [start, end, label] spans."""
    rows, words, spans, start, label = [], [], [], None, None
    for line in list(open(path, encoding="utf-8")) + [""]:
        parts = line.rstrip("\n").split("\t")
        tag = parts[-1] if len(parts) > 1 else "O"
        if start is not None and not tag.startswith("I-"):
            spans.append([start, len(words) - 1, label])
            start = None
        if len(parts) < 2:
            if words:
                rows.append({"tokenized_text": words, "ner": spans})
            words, spans = [], []
            continue
        if tag.startswith("B-"):
            start, label = len(words), tag[2:].lower()
        words.append(parts[0])
    return rows


rows = read_iob(a.data)[: a.pool]
per_epoch = len(rows) // a.batch_size
m = GLiNER.from_pretrained(a.model, load_tokenizer=True)
m.train()
collate = m._create_data_collator()
opt = torch.optim.AdamW(m.parameters(), lr=1e-5, weight_decay=0.01)
times = []
for step in range(2 * per_epoch):
    i = step % per_epoch
    batch = rows[i * a.batch_size:(i + 1) * a.batch_size]
    t0 = time.perf_counter()
    x = collate(batch)
    x = {k: v for k, v in x.items() if isinstance(v, torch.Tensor)}
    loss = m.model(**x, reduction="sum").loss
    opt.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(m.parameters(), 10.0)
    opt.step()
    times.append(time.perf_counter() - t0)
epoch2 = sum(times[per_epoch:])
print(json.dumps({"impl": "torch-gliner-train", "torch": torch.__version__, "threads": a.threads,
                  "batch_size": a.batch_size, "sentences": per_epoch * a.batch_size, "epoch2_s": epoch2,
                  "s_per_step": epoch2 / per_epoch, "sent_per_s": per_epoch * a.batch_size / epoch2,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
