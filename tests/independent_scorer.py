#!/usr/bin/env python3
"""An independent scorer for biomedq run folders, written from ../shared/specs/metrics.md and none of biomedq's code.

    python3 tests/independent_scorer.py RUN_DIR [RUN_DIR ...]

For every task of each run it reads the gold answers from the data files itself, checks biomedq's recorded gold
against them, parses the canonical answer formats itself (the sentence as HTML with <span>s, a label alone, an
option letter, a JSON object of labels) and checks biomedq's parsed answer wherever that parse succeeds, then
recomputes every metric from the recorded answers and compares them with results.json. Exits 1 naming each
difference; prints one line per task otherwise.

The label sets and metric definitions are the specification's (metrics.md), written out here again on purpose.
"""
import csv
import json
import os
import re
import sys

csv.field_size_limit(1 << 30)

# task -> (kind, data folder, label set, negative label, gold column, id column)
TASKS = {
    "bc5cdr-chem": ("ner", "BC5CDR_Chemical", None, None, None, None),
    "ncbi-disease": ("ner", "NCBI_Disease", None, None, None, None),
    "chemprot": ("re", "Chemprot", ["CPR:3", "CPR:4", "CPR:5", "CPR:6", "CPR:9", "false"], "false", "label",
                 "index"),
    "ddi2013": ("re", "DDI", ["DDI-effect", "DDI-mechanism", "DDI-advise", "DDI-int", "DDI-false"], "DDI-false",
                "label", "index"),
    "hoc": ("mlc", "Hoc", ["activating invasion and metastasis", "sustaining proliferative signaling",
                           "resisting cell death", "cellular energetics", "genomic instability and mutation",
                           "evading growth suppressors", "inducing angiogenesis", "enabling replicative immortality",
                           "avoiding immune destruction", "tumor promoting inflammation"], None, "labels", "pmid"),
    "litcovid": ("mlc", "LitCovid", ["Treatment", "Diagnosis", "Prevention", "Mechanism", "Transmission",
                                     "Epidemic Forecasting", "Case Report"], None, "labels", "pmid"),
    "medqa": ("qa", "MedQA", ["A", "B", "C", "D", "E"], None, "answer_idx", None),
    "pubmedqa": ("qa", "PubMedQA", ["yes", "no", "maybe"], None, "final_decision", "pmid"),
}

errors = []


def check(cond, msg):
    if not cond:
        errors.append(msg)


# ---- gold, read from the data files -------------------------------------------------------------------------

def read_conll(path, split):
    """Sentences of token<TAB>tag lines; entities: B starts one, I continues one (an I after O starts one)."""
    sentences, tokens, tags = [], [], []
    with open(path, encoding="utf-8-sig") as f:
        for line in f.read().replace("\r\n", "\n").split("\n"):
            if not line.strip():
                if tokens:
                    sentences.append((tokens, tags))
                    tokens, tags = [], []
                continue
            tok, tag = line.split("\t")[:2]
            tokens.append(tok)
            tags.append(tag.strip()[:1])
    if tokens:
        sentences.append((tokens, tags))
    gold = {}
    for i, (toks, tgs) in enumerate(sentences):
        ents, start = [], None
        for t, tag in enumerate(tgs + ["O"]):
            if start is not None and tag != "I":
                ents.append((start, t))
                start = None
            if tag == "B" or (tag == "I" and start is None):
                start = t
        gold[f"{split}-{i}"] = (toks, sorted(set(ents)))
    return gold


def read_table(path, split, label_col, id_col, multi):
    with open(path, encoding="utf-8-sig", newline="") as f:
        rows = [r for r in csv.reader(f, delimiter="\t") if r]
    header, gold = rows[0], {}
    for i, r in enumerate(rows[1:]):
        cell = dict(zip(header, r))
        key = cell[id_col] if id_col else f"{split}-{i}"
        value = cell[label_col].strip()
        gold[key] = sorted(set(v.strip() for v in value.split(";") if v.strip())) if multi else value
    return gold


# ---- the canonical answer formats, parsed from the raw output ---------------------------------------------

def parse_html(raw, tokens):
    """The specification's NER rule: tags and whitespace removed, offsets carried over to the sentence; a span is
    the entity (i, j) only if its text is the sentence's text there and both ends fall on token boundaries.
    Returns (entities, unaligned) or None when the output holds no <span> tag."""
    if "<span" not in raw.lower():
        return None
    text, spans, opened, i = "", [], None, 0
    while i < len(raw):
        m = re.match(r"<(/?)([A-Za-z][^<>\s/]*)[^<>]*>", raw[i:])
        if m:
            if m.group(2).lower() == "span":
                if not m.group(1):
                    opened = len(text)
                elif opened is not None:
                    if len(text) > opened:
                        spans.append((opened, len(text)))
                    opened = None
            i += m.end()
            continue
        ent = re.match(r"&(amp|lt|gt|quot|#39|apos);", raw[i:])
        if ent:
            text += {"amp": "&", "lt": "<", "gt": ">", "quot": '"', "#39": "'", "apos": "'"}[ent.group(1)]
            i += ent.end()
            continue
        if not raw[i] in " \t\n\r\f\v":
            text += raw[i]
        i += 1
    sentence, starts, ends = "", {}, {}
    for t, tok in enumerate(tokens):
        squeezed = "".join(c for c in tok if c not in " \t\n\r\f\v")
        if squeezed:
            starts[len(sentence)] = t
            sentence += squeezed
            ends[len(sentence)] = t + 1
    entities, unaligned = set(), 0
    for a, b in spans:
        if a in starts and b in ends and starts[a] < ends[b] and text[a:b] == sentence[a:b]:
            entities.add((starts[a], ends[b]))
        else:
            unaligned += 1
    return sorted(entities), unaligned


def parse_canonical(kind, labels, raw):
    """A label or letter alone (optionally with a final period), or a JSON object of label -> 0/1."""
    s = raw.strip()
    if kind in ("re", "qa"):
        s = s.rstrip(".").strip()
        return [s] if s in labels else None
    try:
        obj = json.loads(s)
    except ValueError:
        return None
    if not isinstance(obj, dict) or set(obj) != set(labels) or any(v not in (0, 1) for v in obj.values()):
        return None
    return sorted(k for k, v in obj.items() if v == 1)


# ---- metrics, from the specification -----------------------------------------------------------------------

def f1(tp, fp, fn):
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)


def metrics_for(kind, labels, negative, samples):
    """samples: (gold, predicted or None when unparsed)."""
    out = {"unparsed_rate": sum(p is None for _, p in samples) / len(samples)}
    if kind == "ner":
        tp = fp = fn = 0
        for (gold, (pred, unaligned)) in ((g, p if p is not None else ([], 0)) for g, p in samples):
            tp += len(set(gold) & set(pred))
            fp += len(set(pred) - set(gold)) + unaligned
            fn += len(set(gold) - set(pred))
        out["precision"], out["recall"], out["f1"] = f1(tp, fp, fn)
        return out
    gold_sets = [set(g) for g, _ in samples]
    pred_sets = [set(p or []) for _, p in samples]
    per_label = {}
    for label in labels:
        tp = sum(label in g and label in p for g, p in zip(gold_sets, pred_sets))
        fp = sum(label not in g and label in p for g, p in zip(gold_sets, pred_sets))
        fn = sum(label in g and label not in p for g, p in zip(gold_sets, pred_sets))
        per_label[label] = (tp, fp, fn)
    out["macro_f1"] = sum(f1(*per_label[l])[2] for l in labels) / len(labels)
    if kind == "re":
        pos = [l for l in labels if l != negative]
        out["micro_f1_positive"] = f1(*(sum(per_label[l][k] for l in pos) for k in range(3)))[2]
    elif kind == "mlc":
        out["micro_f1"] = f1(*(sum(per_label[l][k] for l in labels) for k in range(3)))[2]
    else:
        out["accuracy"] = sum(g == p for g, p in zip(gold_sets, pred_sets)) / len(samples)
    return out


def score_run(run):
    config = json.load(open(os.path.join(run, "config.json")))
    results = json.load(open(os.path.join(run, "results.json")))
    records = [json.loads(l) for l in open(os.path.join(run, "samples.jsonl")) if l.strip()]
    data_dir = config["data_dir"]
    for task, t in results["tasks"].items():
        kind, folder, labels, negative, label_col, id_col = TASKS[task]
        split = t["split"]
        path = os.path.join(data_dir, folder, f"{split}.tsv")
        mine = [r for r in records if r["task"] == task]
        check(len({r["id"] for r in mine}) == len(mine), f"{run} {task}: repeated example ids")
        if kind == "ner":
            gold = read_conll(path, split)
        else:
            gold = read_table(path, split, label_col, id_col, kind == "mlc")
        pairs, agreed = [], 0
        for r in mine:
            where = f"{run} {task} {r['id']}"
            ans = r["answer"]
            raw = r["raw"][0] if len(r["raw"]) == 1 else None
            if kind == "ner":
                tokens, g = gold[r["id"]]
                check([tuple(x) for x in r["gold"]] == g, f"{where}: gold entities {r['gold']} != {g}")
                pred = None
                if ans["ok"]:
                    pred = ([tuple(x) for x in ans.get("entities", [])], ans.get("unaligned", 0))
                mine_parse = parse_html(raw, tokens) if raw is not None else None
                if mine_parse is not None:
                    agreed += 1
                    check(pred is not None and sorted(pred[0]) == mine_parse[0] and pred[1] == mine_parse[1],
                          f"{where}: biomedq read {pred} from the HTML answer, the specification gives {mine_parse}"
                          f"\n  raw: {raw!r}")
                pairs.append((g, pred))
            else:
                g = gold[r["id"]]
                g = g if kind == "mlc" else [g]
                check(sorted(r["gold"]) == sorted(g), f"{where}: gold {r['gold']} != {g}")
                pred = sorted(ans.get("labels", [])) if ans["ok"] else None
                canonical = parse_canonical(kind, labels, raw) if raw is not None else None
                if canonical is not None:
                    agreed += 1
                    check(pred == canonical, f"{where}: biomedq read {pred}, the answer says {canonical}"
                                             f"\n  raw: {raw!r}")
                pairs.append((g, pred))
        check(len(pairs) == t["examples_scored"], f"{run} {task}: {len(pairs)} records, results say "
                                                  f"{t['examples_scored']}")
        mine_metrics = metrics_for(kind, labels, negative, pairs)
        for name, value in mine_metrics.items():
            theirs = t["unparsed_rate"] if name == "unparsed_rate" else t["metrics"][name]["value"]
            check(abs(value - theirs) <= 1e-9, f"{run} {task}: {name} {theirs} != {value} (independent)")
        primary = t["primary_metric"]
        print(f"{run} {task}: {primary} {mine_metrics[primary]:.4f}, unparsed {mine_metrics['unparsed_rate']:.3f}, "
              f"{agreed}/{len(pairs)} answers in a canonical format, parsed alike")


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    for run in sys.argv[1:]:
        score_run(run)
    for e in errors:
        print("MISMATCH:", e, file=sys.stderr)
    sys.exit(1 if errors else 0)


if __name__ == "__main__":
    main()
