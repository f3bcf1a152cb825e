"""characters.json: the novel's speakers found at training time (training/characters.py), read by chat.

Written into every model directory (listed in the manifest with its sha256). Plain JSON, read with `json`:
name, aliases, number of attributed utterances and a few short example lines per character (most utterances
first), the quotation marks the novel uses, how many of its quotes could be attributed, and the novel's own
speech form: the verb and the punctuation that introduce a quote (`道：“` in 红楼梦, `说：“` in a modern
novel, `问道` before a question when the novel writes it so). A characters.json written before the speech
form was learnt reads as `道：`, the form chat always used then.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from models.artifacts import read_json_file


@dataclass(frozen=True)
class Character:
    name: str
    utterances: int
    aliases: list[str] = field(default_factory=list)
    examples: list[str] = field(default_factory=list)

    @property
    def names(self) -> list[str]:
        return [self.name, *self.aliases]


@dataclass
class CharacterList:
    characters: list[Character] = field(default_factory=list)
    quotes: tuple[str, str] = ("“", "”")
    quoted: int = 0  # quotes in the novel (opening marks)
    introduced: int = 0  # of those, quotes opened right after a colon (the dialogue form `X道：“`)
    attributed: int = 0  # quotes whose speaker was found
    speech_verb: str = "道"  # the word right before the mark that opens most quotes (道, 说, 曰)
    speech_mark: str = "："  # the punctuation between that verb and the opening quote (： or ，)
    question_verb: str = "道"  # the same for quotes that end in a question mark (问道 in 红楼梦)

    def speech(self, question: bool = False) -> str:
        """What goes between a speaker's name and the opening quote: `道：`, `问道：`, `说，`."""
        return f"{self.question_verb if question else self.speech_verb}{self.speech_mark}"

    def __len__(self) -> int:
        return len(self.characters)

    @property
    def most_frequent(self) -> Character | None:
        return self.characters[0] if self.characters else None

    def find(self, name: str) -> Character | None:
        """The character called `name` or known by it as an alias (exact match after trimming)."""
        name = name.strip()
        for character in self.characters:
            if name in character.names:
                return character
        return None

    def mentioned(self, text: str) -> list[Character]:
        """Characters whose name or alias occurs in `text`, in order of first occurrence; a longer name wins
        over a shorter one inside it (林黛玉 over 黛玉 is the same character; 王夫人 over 夫人)."""
        spans: list[tuple[int, int, Character]] = []
        for character in self.characters:
            for name in character.names:
                at = text.find(name)
                while at >= 0:
                    spans.append((at, -len(name), character))
                    at = text.find(name, at + 1)
        found: list[Character] = []
        covered_until = -1
        for at, negative_length, character in sorted(spans, key=lambda span: (span[0], span[1])):
            if at < covered_until:
                continue
            covered_until = at - negative_length
            if character not in found:
                found.append(character)
        return found

    def summary(self) -> dict:
        """The share figures (for the manifest and /info)."""
        return {
            "characters": len(self.characters),
            "quoted": self.quoted,
            "introduced_by_colon": self.introduced,
            "attributed": self.attributed,
            "attributed_share": round(self.attributed / self.quoted, 4) if self.quoted else None,
            "speech_form": {
                "verb": self.speech_verb,
                "mark": self.speech_mark,
                "question_verb": self.question_verb,
            },
        }

    def to_json(self) -> dict:
        return {
            "quote_marks": list(self.quotes),
            **self.summary(),
            "characters": [asdict(character) for character in self.characters],
        }

    def save(self, path: str | Path) -> None:
        Path(path).write_text(
            json.dumps(self.to_json(), ensure_ascii=False, indent=1) + "\n", encoding="utf-8"
        )

    @classmethod
    def from_json(cls, data: dict) -> CharacterList:
        quotes = data.get("quote_marks") or ["“", "”"]
        if not (
            isinstance(quotes, list) and len(quotes) == 2 and all(isinstance(q, str) and q for q in quotes)
        ):
            raise ValueError("quote_marks must be a list of two non-empty strings")
        characters = []
        for item in data.get("characters", []):
            if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not item["name"]:
                raise ValueError(f"character entry {item!r} has no name")
            characters.append(
                Character(
                    name=item["name"],
                    utterances=int(item.get("utterances", 0)),
                    aliases=[str(a) for a in item.get("aliases", [])],
                    examples=[str(e) for e in item.get("examples", [])],
                )
            )
        form = data.get("speech_form") or {}
        if not isinstance(form, dict) or not all(
            isinstance(form.get(key, "道"), str) and 1 <= len(form.get(key, "道")) <= 4
            for key in ("verb", "mark", "question_verb")
        ):
            raise ValueError("speech_form must hold verb, mark and question_verb, each 1 to 4 characters")
        return cls(
            characters=characters,
            quotes=(quotes[0], quotes[1]),
            speech_verb=form.get("verb", "道"),
            speech_mark=form.get("mark", "："),
            question_verb=form.get("question_verb", form.get("verb", "道")),
            quoted=int(data.get("quoted", 0)),
            introduced=int(data.get("introduced_by_colon", 0)),
            attributed=int(data.get("attributed", 0)),
        )

    @classmethod
    def load(cls, path: str | Path) -> CharacterList:
        """Read characters.json; ValueError (with the reason) for a file that is not one."""
        data = read_json_file(path)
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a JSON object")
        return cls.from_json(data)
