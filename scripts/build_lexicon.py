"""Derive the committed MLC word lexicon from WordNet 3.0 (Debian package ``wordnet-base``).

    apt-get install wordnet-base
    python scripts/build_lexicon.py --wordnet /usr/share/wordnet --out codebook_priors/lexicon

Writes ``{noun,adjective,verb,adverb}.tsv`` (``word<TAB>frequency``) and ``exceptions.tsv``
(irregular inflections, ``inflected<TAB>lemma<TAB>pos``), and copies the WordNet licence beside them.
Words: single lowercase alphabetic lemmas of 2+ letters from ``index.<pos>``, minus stop/function
words (``sweettok.priors.lexicon.STOP_WORDS``); multiword entries (with ``_`` or ``-``) are dropped.
Frequency: the SemCor sense-tag count summed over the lemma's senses of that POS (``cntlist.rev``);
rows are sorted by frequency, then WordNet sense count (polysemy as a proxy for commonness), then
alphabetically, so "the N most frequent" is simply the first N rows.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sweettok.priors.lexicon import (
    POS_NAMES,
    WORDNET_FILE_POS,
    is_clean_word,
    read_wordnet_exceptions,
    read_wordnet_index,
    read_wordnet_tag_counts,
    write_word_list,
)

LICENSE_HEADER = """WordNet 3.0 licence (applies to the word lists in this folder, which are derived from WordNet 3.0
via scripts/build_lexicon.py: lemmas from index.<pos>, frequencies from cntlist.rev).

WordNet Release 3.0. This software and database is being provided to you, the LICENSEE, by
Princeton University under the following license. By obtaining, using and/or copying this software
and database, you agree that you have read, understood, and will comply with these terms and
conditions.:

Permission to use, copy, modify and distribute this software and database and its documentation for
any purpose and without fee or royalty is hereby granted, provided that you agree to comply with the
following copyright notice and statements, including the disclaimer, and that the same appear on ALL
copies of the software, database and documentation, including modifications that you make for
internal use or for distribution.

WordNet 3.0 Copyright 2006 by Princeton University. All rights reserved.

THIS SOFTWARE AND DATABASE IS PROVIDED "AS IS" AND PRINCETON UNIVERSITY MAKES NO REPRESENTATIONS OR
WARRANTIES, EXPRESS OR IMPLIED. BY WAY OF EXAMPLE, BUT NOT LIMITATION, PRINCETON UNIVERSITY MAKES NO
REPRESENTATIONS OR WARRANTIES OF MERCHANT- ABILITY OR FITNESS FOR ANY PARTICULAR PURPOSE OR THAT THE
USE OF THE LICENSED SOFTWARE, DATABASE OR DOCUMENTATION WILL NOT INFRINGE ANY THIRD PARTY PATENTS,
COPYRIGHTS, TRADEMARKS OR OTHER RIGHTS.

The name of Princeton University or Princeton may not be used in advertising or publicity pertaining
to distribution of the software and/or database. Title to copyright in this software, database and
any associated documentation shall at all times remain with Princeton University and LICENSEE agrees
to preserve same.

Citation: Princeton University "About WordNet." WordNet. Princeton University. 2010.
https://wordnet.princeton.edu
"""


def build_pos_list(wordnet: Path, pos: str, tag_counts: dict[str, int]) -> dict[str, int]:
    """Clean lemmas of one POS, ordered by (tag count, sense count, word), mapped to tag count."""
    senses = read_wordnet_index(wordnet / f"index.{WORDNET_FILE_POS[pos]}")
    words = [w for w in senses if is_clean_word(w)]
    words.sort(key=lambda w: (-tag_counts.get(w, 0), -senses[w], w))
    return {w: tag_counts.get(w, 0) for w in words}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wordnet", type=Path, default=Path("/usr/share/wordnet"),
                        help="folder with WordNet index.<pos>, cntlist.rev and <pos>.exc files")
    parser.add_argument("--out", type=Path, default=Path("codebook_priors/lexicon"))
    args = parser.parse_args()
    if not (args.wordnet / "index.noun").is_file():
        raise SystemExit(f"{args.wordnet}/index.noun not found: install WordNet (apt-get install wordnet-base)")
    args.out.mkdir(parents=True, exist_ok=True)
    tag_counts = read_wordnet_tag_counts(args.wordnet / "cntlist.rev")
    lists = {}
    for pos in POS_NAMES:
        lists[pos] = build_pos_list(args.wordnet, pos, tag_counts[pos])
        write_word_list(args.out / f"{pos}.tsv", lists[pos])
        counted = sum(1 for c in lists[pos].values() if c > 0)
        print(f"{pos:10s} {len(lists[pos]):6d} words ({counted} with a SemCor count)")
    with open(args.out / "exceptions.tsv", "w", encoding="utf-8") as f:
        f.write("inflected\tlemma\tpos\n")
        for pos in POS_NAMES:
            for inflected, lemma in read_wordnet_exceptions(args.wordnet / f"{WORDNET_FILE_POS[pos]}.exc").items():
                if inflected.isalpha() and lemma in lists[pos]:
                    f.write(f"{inflected}\t{lemma}\t{pos}\n")
    (args.out / "LICENSE.WordNet").write_text(LICENSE_HEADER, encoding="utf-8")


if __name__ == "__main__":
    main()
