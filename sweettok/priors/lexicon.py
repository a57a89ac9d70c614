"""Word lexicon for MLC priors: per-POS word lists with frequencies, read from committed TSV files.

The lexicon lives in ``codebook_priors/lexicon/{noun,adjective,verb,adverb}.tsv`` (``word<TAB>frequency``,
a header row, rows in selection order) and ``exceptions.tsv`` (``inflected<TAB>lemma<TAB>pos``).
``scripts/build_lexicon.py`` derives them from WordNet 3.0 with the parsing helpers below; the
frequency is the SemCor sense-tag count summed over a lemma's senses (WordNet ``cntlist.rev``).
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from pathlib import Path

logger = logging.getLogger(__name__)

POS_NAMES = ("noun", "adjective", "verb", "adverb")
# WordNet file suffixes and sense-key synset types (cntlist.rev): 1 noun, 2 verb, 3 adj, 4 adv, 5 adj satellite
WORDNET_FILE_POS = {"noun": "noun", "adjective": "adj", "verb": "verb", "adverb": "adv"}
SENSE_KEY_POS = {"1": "noun", "2": "verb", "3": "adjective", "4": "adverb", "5": "adjective"}
DEFAULT_LEXICON_DIR = Path("codebook_priors/lexicon")
_WORD_RE = re.compile(r"^[a-z]{2,}$")

# Stop and function words (pronouns, determiners, prepositions, conjunctions, auxiliaries, modals,
# discourse words): WordNet lists many of them as nouns/verbs/adverbs ("i", "be", "will", "so").
STOP_WORDS = frozenset("""
a about above across after afterwards again against ago all almost alone along already also although
always am among amongst an and another any anybody anyhow anyone anything anyway anywhere are around as
at be became because become becomes becoming been before beforehand behind being below beside besides
between beyond both but by can cannot could dare did do does doing done down during each either else
elsewhere enough etc even ever every everybody everyone everything everywhere except few for former
formerly from further furthermore get gets got had has have having he hence her here hereafter hereby
herein hers herself him himself his how however i ie if in indeed inside instead into is it its itself
just least less let lets like many may maybe me meanwhile might mine more moreover most mostly much must
my myself namely neither never nevertheless next no nobody none noone nor not nothing now nowhere of off
often on once one only onto or other others otherwise ought our ours ourselves out outside over own per
perhaps please quite rather really same say says shall she should since so some somebody somehow someone
something sometime sometimes somewhat somewhere still such than that the their theirs them themselves then
thence there thereafter thereby therefore therein these they this those though through throughout thru
thus to together too toward towards under unless until up upon us very via was we well were what whatever
when whence whenever where whereas whereby wherein whether which while whither who whoever whole whom
whose why will with within without would yes yet you your yours yourself yourselves
oh ah ha hey hi ok okay um uh yeah
""".split())


def is_clean_word(word: str) -> bool:
    """A single lowercase alphabetic word of 2+ letters that is not a stop/function word."""
    return bool(_WORD_RE.match(word)) and word not in STOP_WORDS


def read_wordnet_index(path: Path) -> dict[str, int]:
    """Lemma -> sense count from a WordNet ``index.<pos>`` file (license header lines start with a space)."""
    senses: dict[str, int] = {}
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if line.startswith(" "):
                continue
            fields = line.split()
            senses[fields[0]] = int(fields[2])  # lemma pos synset_cnt ...
    return senses


def read_wordnet_tag_counts(path: Path) -> dict[str, dict[str, int]]:
    """POS -> lemma -> summed SemCor tag count, from WordNet ``cntlist.rev`` (sense_key sense_no tag_cnt)."""
    counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            fields = line.split()
            if len(fields) != 3:
                continue
            lemma, _, rest = fields[0].partition("%")
            pos = SENSE_KEY_POS.get(rest[:1])
            if pos is not None:
                counts[pos][lemma.lower()] += int(fields[2])
    return counts


def read_wordnet_exceptions(path: Path) -> dict[str, str]:
    """Inflected form -> first lemma, from a WordNet ``<pos>.exc`` file."""
    out: dict[str, str] = {}
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            fields = line.split()
            if len(fields) >= 2:
                out.setdefault(fields[0], fields[1])
    return out


def write_word_list(path: Path, frequencies: dict[str, int]) -> None:
    """Write ``word<TAB>frequency`` rows in the dict's order, after a header row."""
    with open(path, "w", encoding="utf-8") as f:
        f.write("word\tfrequency\n")
        for word, count in frequencies.items():
            f.write(f"{word}\t{count}\n")


def read_word_list(path: str | Path) -> dict[str, int]:
    """Read a ``word<TAB>frequency`` file (header row optional) into an ordered dict."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"lexicon file {path} not found (build it with scripts/build_lexicon.py)")
    out: dict[str, int] = {}
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            fields = line.rstrip("\n").split("\t")
            if line_no == 1 and fields[0] == "word":
                continue
            if len(fields) != 2 or not fields[1].lstrip("-").isdigit():
                raise ValueError(f"{path}:{line_no}: expected 'word<TAB>frequency', got {line!r}")
            out[fields[0]] = int(fields[1])
    return out


def load_lexicon(directory: str | Path = DEFAULT_LEXICON_DIR) -> dict[str, dict[str, int]]:
    """POS name -> (word -> frequency), rows in file order (most frequent first)."""
    return {pos: read_word_list(Path(directory) / f"{pos}.tsv") for pos in POS_NAMES}


def load_exceptions(directory: str | Path = DEFAULT_LEXICON_DIR) -> dict[str, dict[str, str]]:
    """POS name -> (inflected form -> lemma); empty when the file is absent."""
    path = Path(directory) / "exceptions.tsv"
    out: dict[str, dict[str, str]] = {pos: {} for pos in POS_NAMES}
    if not path.is_file():
        return out
    with open(path, encoding="utf-8") as f:
        for line in f:
            fields = line.rstrip("\n").split("\t")
            if len(fields) == 3 and fields[2] in out:
                out[fields[2]][fields[0]] = fields[1]
    return out


_SUFFIX_RULES = {  # WordNet "morphy" detachment rules: (suffix, replacement)
    "noun": [("s", ""), ("ses", "s"), ("xes", "x"), ("zes", "z"), ("ches", "ch"), ("shes", "sh"),
             ("men", "man"), ("ies", "y")],
    "verb": [("s", ""), ("ies", "y"), ("es", "e"), ("es", ""), ("ed", "e"), ("ed", ""), ("ing", "e"),
             ("ing", "")],
    "adjective": [("er", ""), ("est", ""), ("er", "e"), ("est", "e")],
    "adverb": [],
}


def lemmatize(word: str, pos: str, vocabulary: set[str] | dict, exceptions: dict[str, str] | None = None) -> str | None:
    """Base form of ``word`` as ``pos`` that is in ``vocabulary`` (WordNet morphy rules), else None."""
    if word in vocabulary:
        return word
    if exceptions and exceptions.get(word) in vocabulary:
        return exceptions[word]
    for suffix, replacement in _SUFFIX_RULES[pos]:
        if word.endswith(suffix) and len(word) > len(suffix):
            stem = word[: len(word) - len(suffix)] + replacement
            if stem in vocabulary:
                return stem
            # doubled final consonant: running -> runn -> run, stopped -> stopp -> stop
            if not replacement and len(stem) > 2 and stem[-1] == stem[-2] and stem[:-1] in vocabulary:
                return stem[:-1]
    return None
