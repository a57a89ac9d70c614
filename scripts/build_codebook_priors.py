"""Build the two MLC codebook priors (spatial adjective+noun, temporal adverb+verb).

    python scripts/build_codebook_priors.py                          # paper sizes -> codebook_priors/
    python scripts/build_codebook_priors.py --demo --out codebook_priors/demo
    python scripts/build_codebook_priors.py --corpus captions.txt    # co-occurrence edges
    python scripts/build_codebook_priors.py --embedding-model path/to/Qwen2.5-0.5B   # any local HF model

Each prior is written as ``<out>/<name>.safetensors`` + ``<out>/<name>.json`` with names
``mlc_codebook_noun_adj`` and ``mlc_codebook_verb_adv``. Without ``--corpus`` every word is linked to
its ``--knn`` most similar words of the paired part of speech. See codebook_priors/README.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

from sweettok.priors.build import DEMO_SIZES, PAPER_SIZES, PRIOR_SPECS, build_prior
from sweettok.priors.embeddings import DEFAULT_EMBEDDING_MODEL, HFWordEmbedder
from sweettok.priors.lexicon import DEFAULT_LEXICON_DIR, load_exceptions, load_lexicon
from sweettok.priors.prior import save_prior

DEMO_WORDS = DEFAULT_LEXICON_DIR / "demo_words.json"


def read_include_words(path: Path) -> dict[str, list[str]]:
    """POS -> forced words, from JSON ({"noun": [...], ...}) or TSV lines ``pos<TAB>word``."""
    if path.suffix == ".json":
        data = json.loads(path.read_text(encoding="utf-8"))
        return {pos: list(words) for pos, words in data.items() if not pos.startswith("_")}
    include: dict[str, list[str]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            pos, word = line.split("\t")[:2]
            include.setdefault(pos.strip(), []).append(word.strip())
    return include


def parse_args() -> argparse.Namespace:
    """Command-line flags."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("codebook_priors"))
    parser.add_argument("--lexicon", type=Path, default=DEFAULT_LEXICON_DIR)
    parser.add_argument("--embedding-model", default=DEFAULT_EMBEDDING_MODEL,
                        help=f"'{DEFAULT_EMBEDDING_MODEL}' (packaged) or a local Hugging Face model folder")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--corpus", type=Path, default=None, help="caption text file, one caption per line")
    parser.add_argument("--window", type=int, default=5, help="co-occurrence window in tokens")
    parser.add_argument("--min-count", type=int, default=1, help="co-occurrences needed for an edge")
    parser.add_argument("--knn", type=int, default=8, help="neighbours per word when there is no corpus")
    parser.add_argument("--demo", action="store_true", help=f"small vocabulary {DEMO_SIZES} + the demo words")
    parser.add_argument("--include-words", type=Path, default=None,
                        help="JSON {pos: [words]} or TSV 'pos<TAB>word' lines forced into the vocabulary")
    for pos in PAPER_SIZES:
        parser.add_argument(f"--{pos}s", type=int, default=None, help=f"{pos} vocabulary size")
    parser.add_argument("--which", nargs="+", choices=sorted(PRIOR_SPECS), default=sorted(PRIOR_SPECS))
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    sizes = dict(DEMO_SIZES if args.demo else PAPER_SIZES)
    sizes.update({pos: getattr(args, f"{pos}s") for pos in PAPER_SIZES if getattr(args, f"{pos}s")})
    include_path = args.include_words or (DEMO_WORDS if args.demo else None)
    include = read_include_words(include_path) if include_path else {}
    start = time.perf_counter()
    lexicon, exceptions = load_lexicon(args.lexicon), load_exceptions(args.lexicon)
    embedder = HFWordEmbedder(args.embedding_model, batch_size=args.batch_size, device=args.device)
    for which in args.which:
        spec = PRIOR_SPECS[which]
        prior = build_prior(spec, lexicon, embedder, sizes, include, corpus=args.corpus, window=args.window,
                            min_count=args.min_count, knn=args.knn, exceptions=exceptions,
                            embedding_model=args.embedding_model)
        tensors_path, _ = save_prior(prior, args.out / spec.name)
        print(f"{spec.name}: {prior.num_first} {spec.first_pos}s + {prior.num_second} {spec.second_pos}s, "
              f"{prior.edges.shape[0]} edges, D={prior.embedding_dim} -> {tensors_path.with_suffix('')}.{{safetensors,json}}")
    print(f"done in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
