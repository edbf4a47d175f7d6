"""The transformers side of `cargo xtask bench predict`: a text-classification pipeline on a
taskmoe run's HF export, on the same rows, batch size and threads as `taskmoe predict`.

    python benches/torch_predict.py EXPORT ROWS.tsv --batch-size 64 --threads 2 --reps 3

Each repetition times what a user's script would do: load the tokenizer and the model into a
`pipeline`, then classify every row. A dense MiniLM export is a `BertModel` folder: the
pipeline loads it as `BertForSequenceClassification` (its classifier freshly initialised;
the cost of that head is negligible beside the encoder's). Prints one line per repetition,
`RUN rows tokens total_seconds load_seconds`, and a `VERSIONS` line.
"""

import argparse
import csv
import time
import warnings


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("export")
    parser.add_argument("rows")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()

    import torch
    import transformers
    from transformers import AutoTokenizer, pipeline

    torch.set_num_threads(args.threads)
    transformers.logging.set_verbosity_error()
    warnings.filterwarnings("ignore")
    with open(args.rows, newline="") as f:
        rows = [r["sentence"] for r in csv.DictReader(f, delimiter="\t")]
    tokenizer = AutoTokenizer.from_pretrained(args.export, trust_remote_code=True)
    tokens = sum(len(ids) for ids in tokenizer(rows, truncation=True)["input_ids"])
    print(f"VERSIONS torch {torch.__version__}, transformers {transformers.__version__}", flush=True)
    for _ in range(args.reps):
        started = time.perf_counter()
        classify = pipeline(
            "text-classification",
            model=args.export,
            tokenizer=args.export,
            device=-1,
            trust_remote_code=True,
        )
        loaded = time.perf_counter() - started
        with torch.inference_mode():
            out = classify(rows, batch_size=args.batch_size, truncation=True)
        total = time.perf_counter() - started
        assert len(out) == len(rows)
        print(f"RUN {len(rows)} {tokens} {total:.4f} {loaded:.4f}", flush=True)


if __name__ == "__main__":
    main()
