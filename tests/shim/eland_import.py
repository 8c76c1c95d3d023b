"""Run by test_shim_e2e under an interpreter that has eland and transformers<5 (test-only):
build a tiny BERT NER model (random weights, saved with vocab.txt), import it into the shim with
eland, start it, infer through eland, and print the results as JSON.

Usage: python eland_import.py <shim url> <work dir>
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from elasticsearch import Elasticsearch
from eland.ml.pytorch import PyTorchModel
from eland.ml.pytorch.transformers import TransformerModel
from transformers import BertConfig, BertForTokenClassification, BertTokenizer

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "josh", "lives", "in", "berlin", "paris", "and", "works",
         "at", "acme", "."]
LABELS = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]


def build(model_dir: Path) -> Path:
    model_dir.mkdir(parents=True, exist_ok=True)
    (model_dir / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    tokenizer = BertTokenizer(str(model_dir / "vocab.txt"), do_lower_case=True)
    config = BertConfig(vocab_size=len(VOCAB), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=512,
                        id2label=dict(enumerate(LABELS)), label2id={l: i for i, l in enumerate(LABELS)})
    BertForTokenClassification(config).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    return model_dir


def main(url: str, work: str) -> int:
    model_dir = build(Path(work) / "tiny-bert-ner")
    tm = TransformerModel(model_id=str(model_dir), task_type="ner", es_version=(9, 1, 0), quantize=False)
    (Path(work) / "eland-out").mkdir(parents=True, exist_ok=True)
    model_path, config, vocab_path = tm.save(Path(work) / "eland-out")
    es = Elasticsearch(url, request_timeout=120)
    model_id = "tiny_bert_ner"
    ptm = PyTorchModel(es, model_id)
    ptm.import_model(model_path=model_path, config_path=None, vocab_path=vocab_path, config=config)
    ptm.start(timeout="120s")
    eland_result = ptm.infer(docs=[{"text_field": "Josh lives in Berlin"}])
    client_result = es.ml.infer_trained_model(model_id=model_id, docs=[{"text_field": "Josh works at Acme ."}])
    stats = es.ml.get_trained_models_stats(model_id=model_id)
    ptm.stop()
    ptm.delete()
    print(json.dumps({"eland": dict(eland_result.body), "client": dict(client_result.body),
                      "state": stats["trained_model_stats"][0]["deployment_stats"]["state"],
                      "config": dict(es.ml.get_trained_models(model_id="_all").body)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1], sys.argv[2]))
