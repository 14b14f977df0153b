"""A small synthetic medical-education corpus for training tiny tokenizers and models."""

from __future__ import annotations

import random

ORGANS = ["heart", "liver", "kidney", "lung", "brain", "stomach", "pancreas", "thyroid", "spleen"]
FUNCTIONS = {
    "heart": "pumps blood through the body",
    "liver": "filters toxins and makes bile",
    "kidney": "filters blood and makes urine",
    "lung": "exchanges oxygen and carbon dioxide",
    "brain": "controls thought and movement",
    "stomach": "digests food with acid",
    "pancreas": "makes insulin and digestive enzymes",
    "thyroid": "makes hormones that control metabolism",
    "spleen": "filters old red blood cells",
}
CONDITIONS = [
    ("hypertension", "high blood pressure", "heart"),
    ("hepatitis", "inflammation of the liver", "liver"),
    ("nephritis", "inflammation of the kidney", "kidney"),
    ("pneumonia", "infection of the lung", "lung"),
    ("stroke", "loss of blood flow to the brain", "brain"),
    ("gastritis", "inflammation of the stomach lining", "stomach"),
    ("diabetes", "high blood sugar from too little insulin", "pancreas"),
    ("hypothyroidism", "too little thyroid hormone", "thyroid"),
]
SAFETY = [
    "Please talk to a doctor or pharmacist before changing any medicine.",
    "In an emergency, call your local emergency number right away.",
    "This is general information, not a diagnosis.",
    "A clinician who can examine you should interpret your results.",
]


def sentences(n: int = 600, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    out: list[str] = []
    for _ in range(n):
        kind = rng.randrange(4)
        if kind == 0:
            organ = rng.choice(ORGANS)
            out.append(f"The {organ} {FUNCTIONS[organ]}.")
        elif kind == 1:
            name, desc, organ = rng.choice(CONDITIONS)
            out.append(f"{name.capitalize()} is {desc} and affects the {organ}.")
        elif kind == 2:
            out.append(rng.choice(SAFETY))
        else:
            name, desc, organ = rng.choice(CONDITIONS)
            out.append(f"Question: Which organ does {name} affect? Answer: the {organ}.")
    return out


def text(n: int = 600, seed: int = 0) -> str:
    return "\n".join(sentences(n, seed))
