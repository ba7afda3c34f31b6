#!/usr/bin/env python3
"""Builds contaccum's default retrieval dataset from Debian's package descriptions.

  make_dataset.py [--source data/debian/Translation-en] [--out data/debian-beir]
                  [--seed 20240611] [--test 1000] [--dev 500] [--min-words 12]

Source: apt's Translation-en (fetched by scripts/setup.sh into data/debian/): deb822
paragraphs of `Package:`, `Description-md5:`, `Description-en: <short description>`
followed by the long description, each line starting with a space, " ." a paragraph break.

Query = the short description, passage = the long description, title = the package name.
Output, in BEIR format (docs/data.md describes it):

  corpus.jsonl           {"_id", "title", "text"}  every passage kept
  queries.jsonl          {"_id", "text"}           every query kept (all splits)
  qrels/{train,dev,test}.tsv  query-id, corpus-id, score (1): one relevant passage a query
  provenance.json        source, its sha256, rules, seed, counts

Rules, in order (each counted in provenance.json):
  1. a package listed more than once (one description per architecture, e.g.
     default-jdk) keeps the entry with the smallest Description-md5;
  2. cleaning: continuation lines lose their leading space, " ." lines become paragraph
     breaks ("\\n"), whitespace runs within a paragraph collapse to one space; the short
     description has its whitespace collapsed too;
  3. transitional and dummy packages are dropped (their descriptions say only that they
     can be removed);
  4. passages shorter than --min-words words are dropped (too little text to match);
  5. packages whose passages are identical (-dbg/-doc/-data packages repeating their
     main package's text) keep one: the shortest package name, then the first in byte order;
  6. a query (short description, compared case-folded) that names more than one kept
     passage is ambiguous and is not used as a query; its passages stay in the corpus.

Split: query ids sorted, shuffled with random.Random(seed) (Python's Mersenne Twister,
the same on every platform), the first --test to test, the next --dev to dev, the rest
to train. The corpus holds every kept passage, so a test query is searched against all.
Deterministic: the same source gives byte-identical files. Standard library only.
"""
import argparse
import hashlib
import json
import os
import random
import re
import shutil
import sys

RULES_VERSION = 1
WHITESPACE = re.compile(r"\s+")
TRANSITIONAL = re.compile(r"\b(transitional|dummy)\b.*\bpackage\b|\bpackage\b.*\b(transitional|dummy)\b", re.I)


def collapse(text):
    return WHITESPACE.sub(" ", text).strip()


def paragraphs(path):
    """Yields (package, md5, short, long_lines) for each deb822 paragraph."""
    with open(path, encoding="utf-8") as f:
        fields, long_lines, in_description = {}, [], False
        for raw in f:
            line = raw.rstrip("\n")
            if not line.strip():
                if fields:
                    yield fields.get("Package"), fields.get("Description-md5"), fields.get("Description-en"), long_lines
                fields, long_lines, in_description = {}, [], False
                continue
            if line.startswith((" ", "\t")):
                if in_description:
                    long_lines.append(line)
                continue
            key, _, value = line.partition(":")
            fields[key] = value.strip()
            in_description = key == "Description-en"
        if fields:
            yield fields.get("Package"), fields.get("Description-md5"), fields.get("Description-en"), long_lines


def clean_long(lines):
    """Debian policy 5.6.13: a leading space starts each line, " ." is an empty line."""
    paras, current = [], []
    for line in lines:
        body = line[1:]
        if body.strip() == ".":
            if current:
                paras.append(collapse(" ".join(current)))
            current = []
        else:
            current.append(body)
    if current:
        paras.append(collapse(" ".join(current)))
    return "\n".join(p for p in paras if p)


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_jsonl(path, rows):
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def main():
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--source", default=os.path.join(here, "data", "debian", "Translation-en"))
    ap.add_argument("--out", default=os.path.join(here, "data", "debian-beir"))
    ap.add_argument("--seed", type=int, default=20240611)
    ap.add_argument("--test", type=int, default=1000)
    ap.add_argument("--dev", type=int, default=500)
    ap.add_argument("--min-words", type=int, default=12)
    args = ap.parse_args()

    counts = {}
    # 1. one entry per package: the smallest Description-md5
    entries = {}
    read = 0
    for package, md5, short, long_lines in paragraphs(args.source):
        if not package or short is None:
            continue
        read += 1
        if package not in entries or md5 < entries[package][0]:
            entries[package] = (md5, short, long_lines)
    counts["paragraphs"] = read
    counts["packages"] = len(entries)
    counts["repeated_package_entries_removed"] = read - len(entries)

    # 2-4. clean; drop transitional/dummy packages and short passages
    kept = {}
    counts["transitional_removed"] = counts["too_short_removed"] = 0
    for package, (md5, short, long_lines) in entries.items():
        query, passage = collapse(short), clean_long(long_lines)
        if TRANSITIONAL.search(query) or TRANSITIONAL.search(passage.split("\n")[0]):
            counts["transitional_removed"] += 1
            continue
        if len(passage.split()) < args.min_words:
            counts["too_short_removed"] += 1
            continue
        kept[package] = (query, passage)

    # 5. identical passages: keep the shortest package name, then the first in byte order
    by_passage = {}
    for package in sorted(kept, key=lambda p: (len(p), p.encode())):
        by_passage.setdefault(kept[package][1], package)
    corpus = {package: kept[package] for package in by_passage.values()}
    counts["duplicate_passages_removed"] = len(kept) - len(corpus)

    # 6. ambiguous queries: one case-folded short description for several passages
    by_query = {}
    for package, (query, _) in corpus.items():
        by_query.setdefault(query.casefold(), []).append(package)
    queries = {p: corpus[p][0] for p in corpus if len(by_query[corpus[p][0].casefold()]) == 1}
    counts["ambiguous_queries_removed"] = len(corpus) - len(queries)
    counts["corpus"] = len(corpus)
    counts["queries"] = len(queries)

    ids = sorted(queries, key=lambda p: p.encode())
    if len(ids) < args.test + args.dev + 1:
        sys.exit(f"make_dataset: only {len(ids)} queries, fewer than test + dev + 1")
    random.Random(args.seed).shuffle(ids)
    splits = {"test": sorted(ids[:args.test], key=str.encode),
              "dev": sorted(ids[args.test:args.test + args.dev], key=str.encode),
              "train": sorted(ids[args.test + args.dev:], key=str.encode)}
    for name, members in splits.items():
        counts[f"{name}_queries"] = len(members)

    words = sorted(len(corpus[p][1].split()) for p in corpus)
    counts["passage_words_median"] = words[len(words) // 2]
    counts["passage_words_mean"] = round(sum(words) / len(words), 1)
    qwords = [len(q.split()) for q in queries.values()]
    counts["query_words_mean"] = round(sum(qwords) / len(qwords), 1)

    out = args.out
    tmp = out + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(os.path.join(tmp, "qrels"), exist_ok=True)
    write_jsonl(os.path.join(tmp, "corpus.jsonl"),
                ({"_id": p, "title": p, "text": corpus[p][1]} for p in sorted(corpus, key=str.encode)))
    write_jsonl(os.path.join(tmp, "queries.jsonl"),
                ({"_id": p, "text": queries[p]} for p in sorted(queries, key=str.encode)))
    for name, members in splits.items():
        with open(os.path.join(tmp, "qrels", f"{name}.tsv"), "w", encoding="utf-8", newline="\n") as f:
            f.write("query-id\tcorpus-id\tscore\n")
            for p in members:
                f.write(f"{p}\t{p}\t1\n")
    source_note = os.path.join(os.path.dirname(args.source), "SOURCE")
    provenance = {
        "dataset": "debian-beir",
        "source": {
            "file": os.path.relpath(args.source, here) if args.source.startswith(here) else args.source,
            "sha256": sha256(args.source),
            "apt_list": open(source_note).read().strip() if os.path.exists(source_note) else None,
        },
        "builder": "scripts/make_dataset.py",
        "rules_version": RULES_VERSION,
        "rules": [
            "one entry per package: the smallest Description-md5",
            "long description: leading space stripped, ' .' lines are paragraph breaks ('\\n'), whitespace collapsed",
            "transitional and dummy packages dropped",
            f"passages of fewer than {args.min_words} words dropped",
            "identical passages: the shortest package name (then byte order) kept",
            "short descriptions (case-folded) naming more than one passage are not queries",
            "query id = corpus id = package name; title = package name; one relevant passage per query",
        ],
        "seed": args.seed,
        "split": {"method": "sorted query ids shuffled with Python random.Random(seed)",
                  "test": args.test, "dev": args.dev, "train": "the rest"},
        "counts": counts,
    }
    with open(os.path.join(tmp, "provenance.json"), "w", encoding="utf-8", newline="\n") as f:
        json.dump(provenance, f, indent=2, ensure_ascii=False)
        f.write("\n")
    # replace the old folder only once the new one is complete
    old = out + ".old"
    shutil.rmtree(old, ignore_errors=True)
    if os.path.exists(out):
        os.rename(out, old)
    os.rename(tmp, out)
    shutil.rmtree(old, ignore_errors=True)
    print(json.dumps(counts))


if __name__ == "__main__":
    main()
