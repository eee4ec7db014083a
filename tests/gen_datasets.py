#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Derivative dataset pairs for testing and benchmarking sparse's dataset deltas.

usage: tests/gen_datasets.py OUT_DIR [--scale N] [--cases CASE,CASE...]

Writes OUT_DIR/<case>/base and OUT_DIR/<case>/derived for each case:

  jsonl      train.jsonl, a question-answer set (id, title, context, question, answers), and its
             v2 with 30% new unanswerable rows interleaved and 5% of rows edited in place (the
             squad -> squad_v2 shape); --scale N makes it about N times larger
  words      a word list and a regional variant: /usr/share/dict/american-english and
             british-english (packages wamerican, wbritish) when installed, else a list built from
             the texts and a variant with British spelling swaps; the two files have different
             names, so the delta must find the similar base file itself
  csv        table.csv, and the same table with a column inserted in the middle and one appended
  truncated  corpus.txt and its first 60% of bytes
  renames    a small tree (nested dirs, text files, an empty file, a mode-755 script) and a derived
             tree where files are renamed or moved, one edited, one removed and one added
  gz         train.jsonl.gz, a gzip'd question-answer set, and its gzip'd v2
  split      a source-like tree of 120 small files, and its next release: some files edited,
             some split in two or merged under new names, new files made of parts of several
             base files, a few wholly new ones, one larger (content that moved between files)
  added      a tree of 60 small files, and a release that edits 20 of them and adds a package of
             48 new files (about 700 KiB, more than a pack of new files holds)

The text is real: this machine's license texts, package copyright files and man pages. It is
deterministic for a given machine (fixed seed, sorted file lists) and uses the standard library
only, so tests can run it anywhere.
"""
import argparse, csv, gzip, itertools, json, os, random, re, shutil

SEED = 20240601
ROWS_PER_SCALE = 6000          # base rows of the jsonl case at --scale 1 (about 5 MB)
MAN_PAGE_STRIDE = 4            # read every 4th man page: enough text, and fast
CASES = ["jsonl", "words", "csv", "truncated", "renames", "gz", "split", "added"]


# ---------------------------------------------------------------------------------------------
# Text sources


def read_text(path):
    """The text of a file, gunzipped when it ends in .gz; undecodable bytes replaced."""
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def list_files(top, keep):
    """Sorted paths of the files under top whose path `keep` accepts ([] if top is missing)."""
    out = []
    for root, dirs, files in os.walk(top):
        dirs.sort()
        out += [os.path.join(root, f) for f in sorted(files) if keep(os.path.join(root, f))]
    return out


ROFF_ESCAPES = [(re.compile(r"\\f(\[[^\]]*\]|\(..|.)"), ""), (re.compile(r"\\s[+-]?\d"), ""),
                (re.compile(r"\\\(.."), " "), (re.compile(r"\\[-]"), "-"),
                (re.compile(r"\\[&e|^%:/,]"), ""), (re.compile(r"\\\*(\(..|\[[^\]]*\]|.)"), "")]


def paragraphs(src, is_break):
    """Lines joined into paragraphs, split where is_break(line) says."""
    paras, cur = [], []
    for line in src.splitlines():
        if is_break(line):
            if cur:
                paras.append(" ".join(cur))
                cur = []
        else:
            cur.append(line.strip())
    if cur:
        paras.append(" ".join(cur))
    return paras


def roff_paragraphs(src):
    """Plain-text paragraphs of a man page: macro lines end a paragraph, escapes are dropped."""
    paras = paragraphs(src, lambda line: line.startswith((".", "'")) or not line.strip())
    return [unescape(p) if "\\" in p else p for p in paras]


def unescape(p):
    """Roff text without its font, size and special-character escapes."""
    for rx, rep in ROFF_ESCAPES:
        p = rx.sub(rep, p)
    return p


def plain_paragraphs(src):
    """Paragraphs of a plain or Debian copyright text: blank lines and ' .' lines separate them."""
    return paragraphs(src, lambda line: not line.strip() or line.strip() == ".")


NOT_PROSE = re.compile(r"[^A-Za-z ]")


def is_prose(p):
    """Whether a paragraph reads as prose: long enough, mostly letters and spaces."""
    return 100 <= len(p) <= 4000 and len(NOT_PROSE.findall(p)) < 0.15 * len(p)


class Corpus:
    """The machine's real text as titled paragraphs (deduplicated: the same GPL text sits in
    hundreds of copyright files) and the sentences they hold."""

    def __init__(self):
        self.paragraphs = []            # (title, text)
        seen = set()
        for title, paras in self._sources():
            for p in paras:
                p = re.sub(r"\s+", " ", p).strip()
                if is_prose(p) and p not in seen:
                    seen.add(p)
                    self.paragraphs.append((title, p))
        if not self.paragraphs:
            raise SystemExit("gen_datasets: found no text under /usr/share")
        self.sentences = [s for _, p in self.paragraphs for s in split_sentences(p)
                          if len(s.split()) >= 6]

    @staticmethod
    def _sources():
        """(title, paragraphs) for each text file read: licenses, copyrights, some man pages."""
        for path in list_files("/usr/share/common-licenses", lambda p: True):
            yield os.path.basename(path), plain_paragraphs(read_text(path))
        for path in list_files("/usr/share/doc", lambda p: p.endswith("/copyright")):
            yield os.path.basename(os.path.dirname(path)), plain_paragraphs(read_text(path))
        pages = list_files("/usr/share/man/man1", lambda p: p.endswith(".gz"))
        for path in pages[::MAN_PAGE_STRIDE]:
            yield os.path.basename(path).split(".")[0], roff_paragraphs(read_text(path))

    def man_text(self, limit):
        """Up to `limit` characters of paragraphs joined as a plain text document."""
        out, n = [], 0
        for _, p in self.paragraphs:
            if n >= limit:
                break
            out.append(p)
            n += len(p) + 2
        return "\n\n".join(out) + "\n"


def split_sentences(p):
    """A paragraph's sentences, split after ., ! or ? followed by a space."""
    return [s for s in re.split(r"(?<=[.!?])\s+", p) if s]


# ---------------------------------------------------------------------------------------------
# jsonl and gz: a question-answer set and its v2


def ask(rng, context):
    """A question about one sentence of `context` and its answer span: 1-3 words of the
    sentence replaced by "what". Returns (question, answer, answer_start) or None."""
    sentences = [s for s in split_sentences(context) if len(s.split()) >= 6]
    if not sentences:
        return None
    s = rng.choice(sentences)
    words = [m for m in re.finditer(r"[A-Za-z][\w'-]*", s)][1:]
    if len(words) < 3:
        return None
    i = rng.randrange(len(words) - 2)
    first, last = words[i], words[i + rng.randrange(3)]
    answer = s[first.start():last.end()]
    question = (s[:first.start()] + "what" + s[last.end():]).rstrip(" .!?;:") + "?"
    return question[0].upper() + question[1:], answer, context.index(s) + first.start()


def qa_row(rng, title, context, question, answer=None, start=None):
    """One squad-style row; no answer makes it an unanswerable (squad_v2) row."""
    return {"id": "%024x" % rng.getrandbits(96), "title": title, "context": context,
            "question": question,
            "answers": {"text": [answer] if answer else [],
                        "answer_start": [start] if answer else []}}


def contexts(rng, corpus):
    """(title, context) per row, endless, a few rows per context as in squad: the real
    paragraphs first, then, past their end (large scales), paragraphs recombined from random
    real sentences."""
    for k in itertools.count():
        if k < len(corpus.paragraphs):
            title, ctx = corpus.paragraphs[k]
        else:
            title = corpus.paragraphs[rng.randrange(len(corpus.paragraphs))][0]
            ctx = " ".join(rng.choices(corpus.sentences, k=rng.randint(3, 8)))
        for _ in range(rng.randint(1, 4)):
            yield title, ctx


def write_qa_pair(corpus, base_path, derived_path, scale, seed):
    """Writes a question-answer set and its v2, streaming both (constant memory at any scale).
    The base has ROWS_PER_SCALE * scale rows or, at scale > 1, scale times the bytes of the
    first ROWS_PER_SCALE rows (later contexts differ in length, so a row count would miss).
    v2 keeps every row in order, edits 5% in place (a new question and answer, same id) and
    after 30% of rows inserts an unanswerable question about the same context."""
    rng = random.Random(seed)
    enc = json.JSONEncoder(ensure_ascii=False).encode
    rows, written, unit = 0, 0, None
    with open(base_path, "w", encoding="utf-8") as fb, \
            open(derived_path, "w", encoding="utf-8") as fd:
        for title, ctx in contexts(rng, corpus):
            if written >= scale * unit if unit else rows >= ROWS_PER_SCALE * scale:
                break
            qa = ask(rng, ctx)
            if qa is None:
                continue
            row = qa_row(rng, title, ctx, *qa)
            line = enc(row) + "\n"
            fb.write(line)
            rows, written = rows + 1, written + len(line)
            if rows == ROWS_PER_SCALE:
                unit = written
            if rng.random() < 0.05:
                edit = ask(rng, ctx)
                if edit:
                    row = dict(row, question=edit[0],
                               answers={"text": [edit[1]], "answer_start": [edit[2]]})
            fd.write(enc(row) + "\n")
            if rng.random() < 0.30:
                other = rng.choice(corpus.sentences).rstrip(" .!?;:")
                question = "Does it say that " + other[0].lower() + other[1:] + "?"
                fd.write(enc(qa_row(rng, title, ctx, question)) + "\n")


def gen_jsonl(corpus, out, scale):
    """The jsonl case: train.jsonl and its v2."""
    base, derived = pair_dirs(out, "jsonl")
    write_qa_pair(corpus, os.path.join(base, "train.jsonl"),
                  os.path.join(derived, "train.jsonl"), scale, SEED)


def gen_gz(corpus, out):
    """The gz case: a smaller question-answer set and its v2, each gzip'd (level 6, no name,
    mtime 0, as `gzip -n` writes); compressed files patch badly unless decompressed first."""
    base, derived = pair_dirs(out, "gz")
    plain_b, plain_d = os.path.join(base, "train.jsonl"), os.path.join(derived, "train.jsonl")
    write_qa_pair(corpus, plain_b, plain_d, 0.5, SEED + 1)
    for path in (plain_b, plain_d):
        with open(path, "rb") as f, open(path + ".gz", "wb") as g:
            g.write(gzip.compress(f.read(), compresslevel=6, mtime=0))
        os.remove(path)


# ---------------------------------------------------------------------------------------------
# words: a word list and its regional variant

BRITISH_WORDS = {"center": "centre", "centers": "centres", "centered": "centred",
                 "fiber": "fibre", "fibers": "fibres", "theater": "theatre", "liter": "litre",
                 "defense": "defence", "offense": "offence", "gray": "grey",
                 "catalog": "catalogue", "catalogs": "catalogues", "analog": "analogue",
                 "traveled": "travelled", "traveling": "travelling", "canceled": "cancelled",
                 "canceling": "cancelling", "labeled": "labelled", "labeling": "labelling",
                 "modeling": "modelling", "modeled": "modelled", "signaled": "signalled",
                 "signaling": "signalling", "program": "programme", "aluminum": "aluminium"}
BRITISH_RULES = [
    (re.compile(r"^([a-z]{4,})iz(e|es|ed|ing|ation|ations|er|ers)$"), r"\1is\2"),
    (re.compile(r"^([a-z]{3,})yz(e|es|ed|ing)$"), r"\1ys\2"),
    (re.compile(r"^(colo|favo|hono|labo|neighbo|behavio|flavo|humo|rumo|vapo|harbo|endeavo|odo"
                r"|armo|valo|vigo|parlo|clamo|cando|rigo|splendo|tumo|fervo|savo)"
                r"r(|s|ed|ing|ite|ites|able|ful|er|ers|al|less|ise|ised|ises|ising|isation)$"),
     r"\1ur\2"),
]


def britishize(word):
    """The British spelling of an American word (-ize/-ise, -yze/-yse, -or/-our, and a list)."""
    if word in BRITISH_WORDS:
        return BRITISH_WORDS[word]
    for rx, rep in BRITISH_RULES:
        word = rx.sub(rep, word)
    return word


def dict_order(words):
    """Words sorted as the dictionaries are: case-insensitively, ties by case."""
    return sorted(set(words), key=lambda w: (w.lower(), w))


def with_possessives(words):
    """The words and their possessives ("color's"), which the dictionaries list too."""
    return words + [w + "'s" for w in words if not w.endswith("s")]


def corpus_words(corpus):
    """The words seen at least twice in the texts: lowercase, or capitalized names."""
    counts = {}
    for _, p in corpus.paragraphs:
        for w in re.findall(r"\b[A-Za-z][a-z]{1,19}\b", p):
            counts[w] = counts.get(w, 0) + 1
    lower = {w for w in counts if w.islower()}
    return [w for w, n in counts.items() if n >= 2 and (w.islower() or w.lower() not in lower)]


def gen_words(corpus, out):
    """The words case: the installed American and British dictionaries, or a corpus word list
    and its British variant. Different names on each side (as the real files are)."""
    base, derived = pair_dirs(out, "words")
    us, gb = "/usr/share/dict/american-english", "/usr/share/dict/british-english"
    if os.path.isfile(us) and os.path.isfile(gb):
        shutil.copyfile(us, os.path.join(base, "american-english"))
        shutil.copyfile(gb, os.path.join(derived, "british-english"))
        return
    words = corpus_words(corpus)
    american = dict_order(with_possessives(words))
    british = dict_order(with_possessives([britishize(w) for w in words] + ["licence"]))
    write(os.path.join(base, "american-english"), "\n".join(american) + "\n")
    write(os.path.join(derived, "british-english"), "\n".join(british) + "\n")


# ---------------------------------------------------------------------------------------------
# csv, truncated, renames


def gen_csv(corpus, out):
    """The csv case: a table of sentences (id, source, n_words, text, split), and the same table
    with n_chars inserted after n_words and a model score appended, as a pipeline adds them."""
    base, derived = pair_dirs(out, "csv")
    rng = random.Random(SEED + 2)
    sentences = ((t, s) for t, p in corpus.paragraphs for s in split_sentences(p))
    with open(os.path.join(base, "table.csv"), "w", newline="") as fb, \
            open(os.path.join(derived, "table.csv"), "w", newline="") as fd:
        wb, wd = csv.writer(fb), csv.writer(fd)
        wb.writerow(["id", "source", "n_words", "text", "split"])
        wd.writerow(["id", "source", "n_words", "n_chars", "text", "split", "score"])
        for n, (title, s) in enumerate(itertools.islice(sentences, 40000), 1):
            split = "test" if rng.random() < 0.1 else "train"
            wb.writerow([n, title, len(s.split()), s, split])
            wd.writerow([n, title, len(s.split()), len(s), s, split, "%.4f" % rng.random()])


def gen_truncated(corpus, out):
    """The truncated case: a 4 MB text and its first 60% of bytes (cut mid-line, as a partial
    download or a head -c is)."""
    base, derived = pair_dirs(out, "truncated")
    data = corpus.man_text(4 << 20).encode("utf-8")
    write(os.path.join(base, "corpus.txt"), data)
    write(os.path.join(derived, "corpus.txt"), data[:len(data) * 6 // 10])


SCRIPT = """#!/bin/sh
# Prepares the splits: one sentence per line, blank lines dropped.
set -eu
for f in data/*.txt; do
    tr -s '\\n' < "$f" > "$f.tmp" && mv "$f.tmp" "$f"
done
"""


def gen_renames(corpus, out):
    """The renames case: a project-like tree, then in the derived tree four files renamed or
    moved (one within its directory, one up, two into new directories), README edited, one
    file removed, one added. The empty file and the 755 script are unchanged."""
    base, derived = pair_dirs(out, "renames")
    rng = random.Random(SEED + 3)
    starts = itertools.count(0, len(corpus.paragraphs) // 10)

    def text(kb):
        """About kb KiB of consecutive paragraphs, from a different place on each call."""
        parts, k = [], next(starts)
        while sum(map(len, parts)) < kb * 1024:
            parts.append(corpus.paragraphs[k % len(corpus.paragraphs)][1])
            k += 1
        return "\n\n".join(parts) + "\n"

    files = {"README.md": text(6), "LICENSE": read_text("/usr/share/common-licenses/Apache-2.0"),
             "docs/guide.txt": text(120), "docs/api/reference.txt": text(200),
             "data/train.txt": text(300), "data/valid.txt": text(60), "data/.keep": "",
             "src/notes.txt": text(40), "src/old/legacy.txt": text(80),
             "scripts/prepare.sh": SCRIPT}
    moves = {"docs/guide.txt": "docs/user-guide.txt",
             "data/valid.txt": "data/splits/validation.txt",
             "src/notes.txt": "NOTES.txt", "docs/api/reference.txt": "docs/reference/api.txt"}
    for rel, body in files.items():
        write(os.path.join(base, rel), body)
        if rel == "src/old/legacy.txt":
            continue
        if rel == "README.md":
            lines = body.split("\n\n")
            lines.insert(rng.randrange(len(lines)), "Version 2 adds a validation split.")
            body = "\n\n".join(lines)
        write(os.path.join(derived, moves.get(rel, rel)), body)
    write(os.path.join(derived, "CHANGELOG.md"), "# Changes\n\n" + text(8))
    for side in (base, derived):
        os.chmod(os.path.join(side, "scripts/prepare.sh"), 0o755)


def gen_split(corpus, out):
    """The split case: 120 files of 2-20 KiB of man page text in 6 directories; in the derived
    tree a third unchanged, a sixth edited, ten split in two and ten pairs merged under new
    names, ten new files of paragraphs taken from three base files each, five wholly new, and a
    larger one (about 300 KiB) joining every fourth base file."""
    base, derived = pair_dirs(out, "split")
    rng = random.Random(SEED + 4)
    paras = [p for _, p in corpus.paragraphs]
    k = 0
    files = {}
    for i in range(120):
        body, size = [], rng.randrange(2, 20) * 1024
        while sum(map(len, body)) < size:
            body.append(paras[k % len(paras)])
            k += 1
        files["pkg%d/mod%03d.txt" % (i % 6, i)] = body
    names = sorted(files)
    rng.shuffle(names)
    split, merged, edited = names[:10], names[10:30], names[30:50]
    for rel, body in files.items():
        write(os.path.join(base, rel), "\n\n".join(body) + "\n")
        if rel in split or rel in merged:
            continue
        if rel in edited:
            body = list(body)
            body.insert(rng.randrange(len(body)), "Changed in version 2.")
        write(os.path.join(derived, rel), "\n\n".join(body) + "\n")
    for rel in split:
        body, half = files[rel], len(files[rel]) // 2
        stem = rel[:-len(".txt")]
        write(os.path.join(derived, stem + "/core.txt"), "\n\n".join(body[:half]) + "\n")
        write(os.path.join(derived, stem + "/extra.txt"), "\n\n".join(body[half:]) + "\n")
    for i in range(0, len(merged), 2):
        body = files[merged[i]] + files[merged[i + 1]]
        write(os.path.join(derived, "merged/part%d.txt" % i), "\n\n".join(body) + "\n")
    for i in range(10):
        body = [p for rel in rng.sample(sorted(files), 3) for p in files[rel][:3]]
        write(os.path.join(derived, "new/mix%d.txt" % i), "\n\n".join(body) + "\n")
    for i in range(5):
        body = paras[k % len(paras):k % len(paras) + 8]
        k += 8
        write(os.path.join(derived, "new/fresh%d.txt" % i), "\n\n".join(body) + "\n")
    body = [p for rel in sorted(files)[::4] for p in files[rel]]
    write(os.path.join(derived, "new/all.txt"), "\n\n".join(body) + "\n")


def gen_added(corpus, out):
    """The added case: 60 files of 2-20 KiB of man page text in 4 directories; in the derived
    tree 20 edited, the rest unchanged, and a new directory of 48 files of 8-20 KiB of text the
    base does not hold (a package added: new files that share more with each other than with
    the base)."""
    base, derived = pair_dirs(out, "added")
    rng = random.Random(SEED + 5)
    paras = [p for _, p in corpus.paragraphs]
    k = 0

    def body(kb):
        nonlocal k
        b = []
        while sum(map(len, b)) < kb * 1024:
            b.append(paras[k % len(paras)])
            k += 1
        return b
    for i in range(60):
        b, rel = body(rng.randrange(2, 20)), "pkg%d/mod%03d.txt" % (i % 4, i)
        write(os.path.join(base, rel), "\n\n".join(b) + "\n")
        if i % 3 == 0:
            b.insert(rng.randrange(len(b)), "Changed in version 2.")
        write(os.path.join(derived, rel), "\n\n".join(b) + "\n")
    for i in range(48):
        write(os.path.join(derived, "added/part%02d.txt" % i),
              "\n\n".join(body(rng.randrange(8, 20))) + "\n")


# ---------------------------------------------------------------------------------------------


def write(path, data):
    """Writes text or bytes to path, making its directory; mode 644."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data.encode("utf-8") if isinstance(data, str) else data)
    os.chmod(path, 0o644)


def pair_dirs(out, case):
    """Fresh OUT/case/base and OUT/case/derived."""
    dirs = [os.path.join(out, case, side) for side in ("base", "derived")]
    for d in dirs:
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
    return dirs


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out")
    ap.add_argument("--scale", type=float, default=1, help="jsonl case about N times larger")
    ap.add_argument("--cases", default=",".join(CASES), help="comma-separated subset of cases")
    args = ap.parse_args()
    cases = args.cases.split(",")
    unknown = set(cases) - set(CASES)
    if unknown:
        ap.error("unknown case(s): " + ", ".join(sorted(unknown)))
    corpus = Corpus()
    makers = {"jsonl": lambda: gen_jsonl(corpus, args.out, args.scale),
              "words": lambda: gen_words(corpus, args.out),
              "csv": lambda: gen_csv(corpus, args.out),
              "truncated": lambda: gen_truncated(corpus, args.out),
              "renames": lambda: gen_renames(corpus, args.out),
              "gz": lambda: gen_gz(corpus, args.out),
              "split": lambda: gen_split(corpus, args.out),
              "added": lambda: gen_added(corpus, args.out)}
    for case in cases:
        makers[case]()


if __name__ == "__main__":
    main()
