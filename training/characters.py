"""Who speaks in the novel: quoted utterances attributed to speakers, for chat (models/chat.py).

Chinese fiction introduces direct speech with an attribution clause before a colon: `宝玉笑道：“…”`,
`凤姐儿忙问：“…”`, `宝玉听了，忙问：“…”`. The speaker is the subject of that clause. No list of names is
used; the rules are about Chinese grammar and this text's own statistics, so they work on any novel:

1. **Attribution clauses.** The text between the last clause boundary (，。！？；…”\\n) and a colon that
   opens a quote. The quote pair is the one the novel uses (`“”` or `「」`).
2. **Subject = clause minus its predicate.** The clause is tagged with `jieba.posseg` (dictionary only, no
   HMM: the HMM glues unknown names onto the verb after them); tokens are stripped from the right while they
   are predicate material (verbs, adverbs, prepositions, conjunctions, aspect particles, and the speech word
   道), what remains is the subject. A clause that is all predicate (`忙问`) takes its subject from the
   clause before it in the same sentence (`宝玉听了，`).
3. **Names, not nouns.** A subject counts as a character only if it recurs (``min_utterances``), does not
   start with a pronoun, numeral or determiner (那婆子, 众人, 他娘), holds no personal pronoun (问他), is not
   a group (二人, 两人: jieba's dictionary tags 二人 as a name; 丫头们, 袭人等), and is not a common noun by
   this text's own usage: common nouns are often preceded by a determiner or classifier (那/这/个/些/的…:
   婆子 44%, 丫头 32%, while 宝玉 2.5%, 鸳鸯 1.5%), names almost never are.
4. **Glued subjects.** jieba's dictionary contains forms like 宝钗笑 and 平儿忙 (a name glued to the next
   verb). A subject A+r is split back to A when A is itself a character and r plus the rest of the clause is a
   predicate the text uses after other subjects (笑道, 忙道). What still comes out glued after attribution
   (宝钗因, 贾母笑: jieba cuts them as one name) is counted for A when A is a character and the glued
   character begins predicates the text uses after subjects (因说, 笑道).
5. **Aliases, only where the text supports both forms as speakers**: A and A儿 (凤姐 / 凤姐儿), and A with
   one more character in front when exactly one such longer speaker exists (黛玉 / 林黛玉, but 宝玉 alone if
   both 贾宝玉 and 甄宝玉 speak). The form used most often as speaker is the character's name.

6. **Speech form.** The verb and the punctuation right before the quotes the novel opens: the most common
   speech word before a mark (`道` of 笑道/问道, `说`) and the mark itself (`：` or `，`), and for quotes
   ending in a question mark the most common two-character form (`问道`). Chat renders turns in that form.

`extract_characters` returns the characters (most utterances first) and every attributed utterance, which
the chat evaluation pairs into exchanges.
"""

from __future__ import annotations

import itertools
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import jieba
import jieba.posseg

from models.characters import Character, CharacterList

# Predicate material, by jieba's POS tags: verbs, adverbs, prepositions, conjunctions, aspect particles
# (了 ul, 着 uz, 过 ug), modal/interjection-like verb morphemes. 的 (uj) is not one: 周瑞家的 is a subject.
_PREDICATE_TAGS = frozenset({"v", "vd", "vg", "vi", "vn", "vq", "d", "dg", "p", "c", "zg", "ul", "uz", "ug"})
# The speech word itself: jieba tags 道 as a classifier (q), which it is not here.
_SPEECH_WORDS = frozenset({"道", "说", "问", "曰"})
# A subject that starts with a pronoun or numeral is a description, not a name (他娘, 二人, 一面), and so is
# one whose first word (of two or more characters) is a verb or adverb (回头, 点头). Single characters are not
# judged by their tag: names are often cut into characters whose dictionary tags mean nothing here (尤 d +
# 氏 ng = 尤氏, 袭 v + 人 n = 袭人), and jieba's dictionary tags some names oddly (平儿 q).
_NOT_NAME_START_TAGS = frozenset({"r", "m"})
# Determiners, classifiers and possessive pronouns: a common noun often follows one of these (那婆子,
# 我的丫头, 他口内), a name almost never does.
_DETERMINERS = "那这个些众位群两几每各诸的他她我你"
_PERSONAL_PRONOUNS = "他她你我"
# A numeral and 人 ("the two of them"), a group however jieba tags it.
_COUNT_OF_PEOPLE = re.compile("[一二三四五六七八九十两几数]+人")
# Prepositions and verbs that take a person as object: 向/对/和/与/同/跟 X, 叫/问/见/拉/请/给 X.
_ADDRESSING = "向对和与同跟叫问见拉请给"
COMMON_NOUN_SHARE = 0.2  # above this share of determiner-preceded occurrences, a word is a common noun
MAX_NAME_CHARS = 5  # 林之孝家的
MIN_NAME_CHARS = 2
EXAMPLES = 3
EXAMPLE_CHARS = 40
_CLAUSE_BOUNDARY = "，。！？；…”」’』\n、,!?;"
_SENTENCE_BOUNDARY = "。！？”」\n!?"
QUOTE_PAIRS = (("“", "”"), ("「", "」"))
MAX_GAP_CHARS = 30  # narration allowed between one quote's end and the answer's opening quote


@dataclass(frozen=True)
class Utterance:
    """One attributed quote: who said it, the words inside the quotes, and where (chapter, offsets)."""

    speaker: str
    text: str
    chapter: int
    start: int  # offset of the opening quote in the chapter
    end: int  # offset just after the closing quote


@dataclass
class Extraction:
    characters: CharacterList
    utterances: list[Utterance] = field(default_factory=list)


def quote_pair(text: str) -> tuple[str, str]:
    """The quotation marks the novel uses for dialogue: the pair whose opening mark is more frequent."""
    return max(QUOTE_PAIRS, key=lambda pair: text.count(pair[0]))


def pos_tagger(user_dict: str | Path | None = None) -> jieba.posseg.POSTokenizer:
    """jieba's POS tagger over its own dictionary (plus the model's user dictionary, whose tags count)."""
    tagger = jieba.posseg.POSTokenizer(jieba.Tokenizer())
    if user_dict is not None:
        tagger.load_userdict(str(user_dict))
    return tagger


def _find_close(text: str, start: int, close: str, open_: str) -> int:
    """Index of the closing mark of the quote opened at `start`, or -1 (not closed in its paragraph)."""
    end = text.find(close, start + 1)
    newline = text.find("\n", start + 1)
    reopened = text.find(open_, start + 1)
    if end < 0 or (0 <= newline < end) or (0 <= reopened < end):
        return -1
    return end


class _Clauses:
    """The attribution clauses of every colon-introduced quote, tagged once."""

    def __init__(self, chapters: list[str], open_: str, tagger: jieba.posseg.POSTokenizer) -> None:
        self.tagger = tagger
        self.items: list[
            tuple[int, int, str, list[str]]
        ] = []  # (chapter, quote start, final clause, earlier)
        for number, chapter in enumerate(chapters):
            for match in re.finditer(re.escape("：" + open_) + "|" + re.escape(":" + open_), chapter):
                colon = match.start()
                sentence_start = max(chapter.rfind(mark, 0, colon) for mark in _SENTENCE_BOUNDARY) + 1
                sentence = chapter[sentence_start:colon]
                clauses = re.split("[" + re.escape(_CLAUSE_BOUNDARY) + "]", sentence)
                self.items.append((number, colon + 1, clauses[-1], clauses[:-1]))
        self._tags: dict[str, list[tuple[str, str]]] = {}

    def tags(self, clause: str) -> list[tuple[str, str]]:
        if clause not in self._tags:
            self._tags[clause] = [(p.word, p.flag) for p in self.tagger.cut(clause, HMM=False)]
        return self._tags[clause]

    def split(self, clause: str) -> tuple[str, str]:
        """(subject, predicate): predicate tokens stripped from the right."""
        tokens = self.tags(clause)
        cut = len(tokens)
        while cut > 0:
            if _is_predicate(*tokens[cut - 1]):
                cut -= 1
            else:
                break
        subject = "".join(word for word, _ in tokens[:cut])
        return subject, clause[len(subject) :]


def _is_predicate(word: str, flag: str) -> bool:
    # 问道/说道/笑道 are single dictionary words, some tagged as nouns: a two-character word ending in a
    # speech word is speech whatever its tag.
    return flag in _PREDICATE_TAGS or word in _SPEECH_WORDS or (len(word) == 2 and word[-1] in _SPEECH_WORDS)


def _looks_like_name(word: str, tagger: jieba.posseg.POSTokenizer, text: str) -> bool:
    if not MIN_NAME_CHARS <= len(word) <= MAX_NAME_CHARS or word[0] in _DETERMINERS:
        return False
    if any(pronoun in word for pronoun in _PERSONAL_PRONOUNS) or _COUNT_OF_PEOPLE.fullmatch(word):
        return False
    if word.endswith(("们", "等")):  # plural and "and the others": 婆子们, 袭人等 are groups, not a character
        return False
    first = next(iter(tagger.cut(word, HMM=False)))
    if first.flag in _NOT_NAME_START_TAGS:
        return False
    if len(first.word) >= 2 and _is_predicate(first.word, first.flag):
        return False
    if (
        list(tagger.cut(word, HMM=False))[-1].flag == "f"
    ):  # 口内, 门外: a place (localiser last), not a person
        return False
    # A person is also spoken to or about somewhere (向宝玉, 叫袭人, 和平儿); 口内 ("in the mouth") never is.
    if not re.search("[" + _ADDRESSING + "]" + re.escape(word), text):
        return False
    occurrences = [match.start() for match in re.finditer(re.escape(word), text)]
    preceded = sum(1 for at in occurrences if at > 0 and text[at - 1] in _DETERMINERS)
    return not occurrences or preceded / len(occurrences) <= COMMON_NOUN_SHARE


_SPEECH_MARKS = "：，:,"
_QUESTION_ENDS = ("？", "?", "？”", "?”")


def speech_form(chapters: list[str], open_: str, close: str) -> tuple[str, str, str]:
    """(verb, mark, question verb) that introduce this novel's quotes (rule 6); `道：` when it has none."""
    forms: Counter[tuple[str, str]] = Counter()
    questions: Counter[str] = Counter()
    for chapter in chapters:
        for match in re.finditer(re.escape(open_), chapter):
            at = match.start()
            if at < 2 or chapter[at - 1] not in _SPEECH_MARKS or chapter[at - 2] not in _SPEECH_WORDS:
                continue
            mark = {":": "：", ",": "，"}.get(chapter[at - 1], chapter[at - 1])
            forms[(chapter[at - 2], mark)] += 1
            end = chapter.find(close, at + 1)
            if end > 0 and chapter[end - 1] in "？?":
                questions["问" if chapter[at - 2] == "问" else chapter[max(0, at - 3) : at - 1]] += 1
    if not forms:
        return "道", "：", "道"
    (verb, mark), _ = forms.most_common(1)[0]
    asked = [
        form
        for form, _ in questions.most_common()
        if form == "问" or (form.endswith(verb) and form[0] == "问")
    ]
    return verb, mark, asked[0] if asked else verb


def extract_characters(
    chapters: list[str],
    user_dict: str | Path | None = None,
    min_utterances: int = 3,
    max_characters: int = 200,
    tagger: jieba.posseg.POSTokenizer | None = None,
) -> Extraction:
    """Attribute the novel's quotes to speakers; see the module docstring. A novel without colon-introduced
    quotes has no characters (an empty list), which is not an error."""
    text = "\n".join(chapters)
    open_, close = quote_pair(text)
    tagger = tagger or pos_tagger(user_dict)
    clauses = _Clauses(chapters, open_, tagger)

    # Pass 1: subjects of the final clauses, and the predicates the text uses after them.
    subjects: Counter[str] = Counter()
    predicates: Counter[str] = Counter()
    for _, _, final, _ in clauses.items:
        subject, predicate = clauses.split(final)
        if subject:
            subjects[subject] += 1
            predicates[predicate] += 1
    names = {
        word
        for word, count in subjects.items()
        if count >= min_utterances and _looks_like_name(word, tagger, text)
    }
    # 向袭人 / 和贾蓉 / 指宝玉 (a preposition, conjunction or verb, then a name) name the person spoken to or
    # about, not the speaker.
    names = {
        word
        for word in names
        if not (word[1:] in names and next(iter(tagger.cut(word[0], HMM=False))).flag in ("p", "c", "v", "d"))
    }

    # Remainders that follow several different names inside subjects (袭人冷笑, 晴雯冷笑, 探春冷笑: jieba's
    # dictionary tags 冷笑 as a name). Not a remainder ending in 的: 周瑞家的 is "周瑞's wife", another
    # person.
    followers: defaultdict[str, set[str]] = defaultdict(set)
    for subject in subjects:
        for cut in range(MIN_NAME_CHARS, len(subject)):
            if subject[:cut] in names and not subject.endswith("的"):
                followers[subject[cut:]].add(subject[:cut])

    def unglue(subject: str, predicate: str) -> str:
        # 宝钗笑 + 道 -> 宝钗 when 宝钗 is a character and 笑道 a predicate seen after other subjects.
        for cut in range(len(subject) - 1, MIN_NAME_CHARS - 1, -1):
            head, rest = subject[:cut], subject[cut:]
            if head in names and (
                predicates[rest + predicate] >= min_utterances or len(followers[rest]) >= min_utterances
            ):
                return head
        return subject

    def name_at_start(clause: str) -> str | None:
        subject, predicate = clauses.split(clause)
        subject = unglue(subject, predicate)
        if subject in names:
            return subject
        for length in range(min(MAX_NAME_CHARS, len(clause)), MIN_NAME_CHARS - 1, -1):
            if clause[:length] in names:
                return clause[:length]
        return None

    def has_subject(clause: str) -> bool:
        # `又推宝琴笑道` starts with an adverb: its subject is in an earlier clause (宝钗忙起身答应了，).
        tokens = clauses.tags(clause)
        return bool(clauses.split(clause)[0]) and not (tokens and _is_predicate(*tokens[0]))

    # Pass 2: attribute every quote.
    raw: list[tuple[str, int, int, int]] = []  # (speaker, chapter, start, end)
    for number, start, final, earlier in clauses.items:
        end = _find_close(chapters[number], start, close, open_)
        if end < 0:
            continue
        speaker = name_at_start(final)
        if speaker is None and not has_subject(final):
            for clause in reversed(earlier):
                speaker = name_at_start(clause)
                if speaker is not None or has_subject(clause):
                    break
        if speaker is not None:
            raw.append((speaker, number, start, end + 1))

    # 宝钗因 / 贾母笑: a character with the first character of a predicate glued on is that character.
    predicate_starts = Counter(predicate[0] for predicate in predicates.elements() if predicate)
    found = {speaker for speaker, *_ in raw}

    def glued(speaker: str) -> str:
        head = speaker[:-1]
        if len(head) >= MIN_NAME_CHARS and head in found and predicate_starts[speaker[-1]] >= min_utterances:
            return head
        return speaker

    raw = [(glued(speaker), *place) for speaker, *place in raw]
    counts = Counter(speaker for speaker, *_ in raw)
    counts = Counter({name: count for name, count in counts.items() if count >= min_utterances})
    canonical = _merge_aliases(counts)
    merged: Counter[str] = Counter()
    aliases: dict[str, set[str]] = defaultdict(set)
    for name, count in counts.items():
        merged[canonical[name]] += count
        if canonical[name] != name:
            aliases[canonical[name]].add(name)

    utterances = [
        Utterance(canonical[s], chapters[n][a + 1 : b - 1], n, a, b) for s, n, a, b in raw if s in canonical
    ]
    examples: dict[str, list[str]] = defaultdict(list)
    for utterance in utterances:
        lines = examples[utterance.speaker]
        if (
            len(lines) < EXAMPLES
            and 4 <= len(utterance.text) <= EXAMPLE_CHARS
            and utterance.text not in lines
        ):
            lines.append(utterance.text)
    characters = [
        Character(name=name, aliases=sorted(aliases[name]), utterances=count, examples=examples[name])
        for name, count in merged.most_common(max_characters)
    ]
    total_quotes = sum(chapter.count(open_) for chapter in chapters)
    verb, mark, question_verb = speech_form(chapters, open_, close)
    return Extraction(
        characters=CharacterList(
            characters=characters,
            quotes=(open_, close),
            quoted=total_quotes,
            introduced=len(clauses.items),
            attributed=len(utterances),
            speech_verb=verb,
            speech_mark=mark,
            question_verb=question_verb,
        ),
        utterances=utterances,
    )


def _merge_aliases(counts: Counter[str]) -> dict[str, str]:
    """name -> the character's name (see rule 5 of the module docstring)."""
    parent = {name: name for name in counts}

    def root(name: str) -> str:
        while parent[name] != name:
            name = parent[name]
        return name

    def union(a: str, b: str) -> None:
        ra, rb = root(a), root(b)
        if ra != rb:
            parent[rb] = ra  # which root is kept does not matter: the name is chosen per group below

    longer: dict[str, list[str]] = defaultdict(list)
    for name in counts:
        if name.endswith("儿") and name[:-1] in counts:
            union(name[:-1], name)
        if len(name) >= MIN_NAME_CHARS + 1:
            longer[name[1:]].append(name)
    for short, forms in longer.items():
        if short in counts and len(forms) == 1:
            union(short, forms[0])
    groups: dict[str, list[str]] = defaultdict(list)
    for name in counts:
        groups[root(name)].append(name)
    canonical = {}
    for members in groups.values():
        best = max(members, key=lambda name: (counts[name], name))
        canonical.update(dict.fromkeys(members, best))
    return canonical


def exchanges(utterances: list[Utterance], chapters: set[int]) -> list[tuple[Utterance, Utterance]]:
    """(A, B) pairs: consecutive attributed utterances in one of `chapters`, different speakers, B opened
    within MAX_GAP_CHARS after A closed."""
    pairs = []
    ordered = sorted((u for u in utterances if u.chapter in chapters), key=lambda u: (u.chapter, u.start))
    for first, second in itertools.pairwise(ordered):
        if (
            first.chapter == second.chapter
            and first.speaker != second.speaker
            and 0 <= second.start - first.end <= MAX_GAP_CHARS
            and first.text.strip()
            and second.text.strip()
        ):
            pairs.append((first, second))
    return pairs


def adjacent_quotes(chapters: list[str], numbers: set[int]) -> list[tuple[int, str, str]]:
    """(chapter, first, second): every quote of `chapters[n]` for n in `numbers` and the quote after it,
    when at most MAX_GAP_CHARS of narration stand between them, attributed or not and whoever speaks (a
    speaker going on after a pause says something related too). More pairs of related speech than the
    attributed exchanges, for what is learned from pairs alone (training/bilinear.py). Chapters 0-based."""
    open_, close = quote_pair("\n".join(chapters[n] for n in sorted(numbers) if n < len(chapters)))
    quote = re.compile(re.escape(open_) + f"([^{re.escape(open_ + close)}]*)" + re.escape(close))
    pairs = []
    for number in sorted(numbers):
        if number >= len(chapters):
            continue
        found = list(quote.finditer(chapters[number]))
        for first, second in itertools.pairwise(found):
            if (
                0 <= second.start() - first.end() <= MAX_GAP_CHARS
                and first.group(1).strip()
                and second.group(1).strip()
            ):
                pairs.append((number, first.group(1), second.group(1)))
    return pairs
