"""An invented novel for the training tests: modern lines shuffled into chapters of a novel's layout."""

from __future__ import annotations

import random

LINES = [
    "清晨的雾气还没有散去，老渔夫已经把小船推进了河里。",
    "他一边摇橹，一边哼着年轻时学会的山歌，歌声在水面上飘得很远。",
    "岸边的柳树垂下长长的枝条，几只白鹭站在浅滩上，静静地望着水里的小鱼。",
    "村子里的孩子们背着书包，沿着石板路跑向学校，笑声惊起了屋檐下的麻雀。",
    "渔夫的女儿站在门口喊他回来吃早饭：“今天的鱼特别多，要等太阳升高了再回家！”",
    "母亲摇摇头，转身回到厨房，把热腾腾的粥盛进碗里，又切了一碟咸菜放在桌上。",
]


def river_chapters(count: int, newline: str = "\n", lines: list[str] = LINES, seed: int = 0) -> list[str]:
    """`count` chapters titled 第N回　河边的故事, each 12 lines drawn (seeded) from `lines`."""
    rng = random.Random(seed)
    return [
        f"第{number}回　河边的故事{newline}{newline}" + newline.join(rng.choice(lines) for _ in range(12))
        for number in range(1, count + 1)
    ]
