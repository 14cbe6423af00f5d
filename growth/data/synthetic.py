"""Embedded procedural children's stories: the no-network default corpus.

This is NOT TinyStories. It is a small generator of simple stories (characters, objects, places,
feelings and a short plot) so the harness runs end to end without any download. Results on it say
nothing about TinyStories; use `data=local` with the shared sample or `data=tinystories` for science.
Deterministic: the same (seed, index) always gives the same story.
"""

from __future__ import annotations

import random

NAMES = ["lily", "tom", "mia", "ben", "sue", "max", "anna", "sam", "lucy", "tim", "zoe", "jack"]
ANIMALS = ["cat", "dog", "bird", "bunny", "frog", "bear", "duck", "fox", "mouse", "puppy"]
OBJECTS = [
    "ball",
    "kite",
    "red hat",
    "toy car",
    "big box",
    "shiny stone",
    "blue cup",
    "drum",
    "little boat",
    "teddy bear",
    "book",
    "flower",
]
PLACES = [
    "the park",
    "the garden",
    "the beach",
    "the forest",
    "the school",
    "the farm",
    "the big hill",
    "the river",
    "the zoo",
    "the kitchen",
]
FEELINGS_GOOD = ["happy", "glad", "proud", "excited", "calm"]
FEELINGS_BAD = ["sad", "scared", "angry", "worried", "lonely"]
WEATHER = ["sunny", "rainy", "windy", "cold", "warm"]
ADJECTIVES = ["little", "kind", "brave", "silly", "curious", "shy", "clever"]
PROBLEMS = [
    "lost the {obj}",
    "could not find the {obj}",
    "dropped the {obj} in the water",
    "saw that the {obj} was broken",
    "wanted the {obj} but it was too high",
]
HELPS = [
    "{helper} looked everywhere and found the {obj} under a tree",
    "{helper} used a long stick to get the {obj}",
    "{helper} fixed the {obj} with some glue",
    "{helper} shared a {obj2} and they played together",
    "{helper} said a kind word and gave a big hug",
]
ENDINGS = [
    "from that day on, they were best friends.",
    "they learned that sharing makes everyone happy.",
    "they went home and had a warm cup of milk.",
    "they laughed and played until the sun went down.",
    "{hero} said thank you, and {helper} smiled.",
]


def story(seed: int, index: int) -> str:
    """One story, a pure function of (seed, index)."""
    rng = random.Random(seed * 1_000_003 + index)
    hero, helper = rng.sample(NAMES, 2)
    pet = rng.choice(ANIMALS)
    obj, obj2 = rng.sample(OBJECTS, 2)
    place = rng.choice(PLACES)
    adj = rng.choice(ADJECTIVES)
    good, bad = rng.choice(FEELINGS_GOOD), rng.choice(FEELINGS_BAD)
    fill = dict(hero=hero, helper=helper, obj=obj, obj2=obj2)
    lines = [
        f"once upon a time, there was a {adj} {rng.choice(['girl', 'boy'])} named {hero}.",
        f"{hero} had a {pet} and a {obj}.",
        f"one {rng.choice(WEATHER)} day, {hero} went to {place} with the {pet}.",
    ]
    if rng.random() < 0.5:
        lines.append(f"{hero} liked to play with the {obj} every day.")
    lines.append(f"but then {hero} {rng.choice(PROBLEMS).format(**fill)}.")
    lines.append(f"{hero} felt {bad}.")
    lines.append(f'then {helper} came by and asked, "why are you {bad}?"')
    lines.append(f"{rng.choice(HELPS).format(**fill)}.")
    lines.append(f"{hero} was {good} again.")
    lines.append(rng.choice(ENDINGS).format(**fill))
    return " ".join(lines)


def stories(seed: int, count: int, start: int = 0) -> list[str]:
    """`count` stories starting at `start`."""
    return [story(seed, i) for i in range(start, start + count)]
