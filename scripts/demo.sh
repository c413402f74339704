#!/usr/bin/env bash
# `make demo`: build a small sample archive, index it with the embedded Qdrant store, open the UI.
set -euo pipefail
PY=$1 ARCHIVE=$2 DATA=$3
VB="$(dirname "$PY")/vbsearch"
start=$(date +%s)

if [ ! -f "$ARCHIVE/truth.json" ]; then
  echo "==> generating a 3-minute narrated sample archive in $ARCHIVE"
  "$PY" -m vbsearch.samplegen "$ARCHIVE" --minutes 3
fi
echo "==> ingesting $ARCHIVE/videos (objectflow features, offline faster-whisper tiny.en)"
"$VB" index "$ARCHIVE/videos" --data-dir "$DATA" --catalog-only
# The default 2-layer model cut from the offline MiniLM, trained for a budget sized to the archive (about a
# minute for these 3 minutes on a laptop CPU; `vbsearch train --help`). On a data dir trained before, this only refits the narration lexicon (a few seconds); on one a former
# version built with other features (its vocabulary no longer fits them), it starts the model over.
echo "==> pretraining VideoBERT on the archive"
"$VB" train --data-dir "$DATA" || "$VB" train --data-dir "$DATA" --fresh
echo "==> building the search index"
"$VB" index "$ARCHIVE/videos" --data-dir "$DATA"
"$VB" status --data-dir "$DATA"
echo "==> demo prepared in $(( $(date +%s) - start )) s; try: $VB search 'a red circle moving left' --data-dir $DATA"
echo "==> opening the UI on http://127.0.0.1:8501 (Ctrl-C to stop)"
exec "$VB" ui --data-dir "$DATA"
