"""Reference scores of the WordNet gloss benchmark that need no model: the majority class of
the test split and a bag-of-words naive Bayes (add-one smoothing, binary word features,
lower-cased alphanumeric words) trained on each task's training split. Standard library only.

    cargo xtask fetch-data wordnet
    python3 python/wordnet_baselines.py [configs/wordnet/data]

docs/realtext.md quotes its output.
"""

import collections
import math
import os
import re
import sys


def rows(path):
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    header = lines[0].split("\t")
    gloss, label = header.index("gloss"), header.index("label")
    out = []
    for line in lines[1:]:
        cells = line.split("\t")
        out.append((set(re.findall(r"[a-z0-9]+", cells[gloss].lower())), cells[label]))
    return out


def naive_bayes(train, test):
    prior = collections.Counter(y for _, y in train)
    counts = collections.defaultdict(collections.Counter)
    vocab = set()
    for words, y in train:
        counts[y].update(words)
        vocab |= words
    totals = {y: sum(counts[y].values()) for y in prior}

    def predict(words):
        def score(y):
            return math.log(prior[y]) + sum(
                math.log((counts[y][w] + 1) / (totals[y] + len(vocab))) for w in words if w in vocab
            )

        return max(sorted(prior), key=score)

    return sum(predict(w) == y for w, y in test) / len(test)


def main():
    data = sys.argv[1] if len(sys.argv) > 1 else "configs/wordnet/data"
    print(f"{'task':<14}{'train':>6}{'test':>6}{'majority':>10}{'naive Bayes':>13}")
    for task in sorted(os.listdir(data)):
        folder = os.path.join(data, task)
        if not os.path.isdir(folder):
            continue
        train, test = rows(os.path.join(folder, "train.tsv")), rows(os.path.join(folder, "test.tsv"))
        majority = collections.Counter(y for _, y in test).most_common(1)[0][1] / len(test)
        nb = naive_bayes(train, test)
        print(f"{task:<14}{len(train):>6}{len(test):>6}{majority:>10.3f}{nb:>13.3f}")


if __name__ == "__main__":
    main()
