"""The lines printed at the end of training: what was read, how it was cut, what was held out, how long each
stage took, who speaks, and where the model is."""

from __future__ import annotations

from pathlib import Path


def print_summary(out: Path, manifest: dict) -> None:
    corpus, vocabulary, timings = manifest["corpus"], manifest["vocabulary"], manifest["timings"]
    cached = " (cached)" if manifest["segmentation"].get("cache_hit") else ""
    held = vocabulary["held_out_chapters"]
    held_out = f"last {held} chapter{'s' if held > 1 else ''}" if held else "last 10% of the only chapter"
    lines = [
        f"corpus      {corpus['name']}: encoding {corpus['encoding']}, {corpus['chars']:,} chars, "
        f"{corpus['chapters']} chapters, commentary {'stripped' if corpus['strip_brackets'] else 'kept'}",
        _cleaning_line(corpus.get("cleaning") or {}),
        f"tokens      {corpus['tokens']:,} {manifest['segmentation'].get('tokenizer', 'jieba')} tokens"
        f"{cached} -> {vocabulary['tokens']:,} model tokens (rarer words spelled with their characters, "
        "none deleted)",
        f"vocabulary  {vocabulary['size']:,} entries x {vocabulary['dim']} dims ({vocabulary['words']:,} "
        f"words, {vocabulary['single_characters']:,} characters, <unk>): words >= {vocabulary['min_count']} "
        f"in the training chapters, characters >= {vocabulary['min_char_count']}",
        f"held out    {held_out}, {vocabulary['held_out_tokens']:,} tokens: "
        f"{vocabulary['held_out']['spelled_share']:.1%} characters of spelled-out words, "
        f"{vocabulary['held_out']['unk_share']:.2%} <unk>",
        "seconds     " + ", ".join(f"{stage} {seconds:.1f}" for stage, seconds in timings.items()),
        "cpu seconds "
        + ", ".join(f"{stage} {seconds:.1f}" for stage, seconds in manifest["cpu_seconds"].items()),
        *([_characters_line(manifest["characters"])] if "characters" in manifest else []),
        f"model       {out}",
    ]
    print("\n".join(lines))


def _cleaning_line(cleaning: dict) -> str:
    if cleaning.get("kept"):
        return "cleaned     nothing: --keep-markup keeps HTML markup and download-site lines"
    tags, lines, inserted = (cleaning.get(key, 0) for key in ("tags", "site_lines", "site_insertions"))
    return (
        f"cleaned     {tags:,} HTML tags, {lines:,} download-site lines and {inserted:,} site insertions "
        "removed (--keep-markup keeps them)"
    )


def _characters_line(characters: dict) -> str:
    if not characters.get("characters"):
        return "characters  none (no attributed dialogue: chat uses a neutral narrator form)"
    top = ", ".join(f"{c['name']} {c['utterances']:,}" for c in characters["top"])
    share = characters["attributed_share"]
    return (
        f"characters  {characters['characters']} speakers, {characters['attributed']:,} of "
        f"{characters['quoted']:,} quotes attributed ({share:.0%}); top: {top}"
    )
