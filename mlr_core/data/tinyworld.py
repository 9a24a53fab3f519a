"""tinyworld: the embedded synthetic multi-label benchmark.

A scene is 1-4 flat shapes (20 visually distinct classes, several colours and sizes) on a light
background. Images are a pure function of the scene spec (:func:`render_scene`), so the pretraining
part is never stored: the pretraining stages draw its specs and render them in memory (~1-3 ms each).

Captions come from a small grammar (:func:`caption_scene`) written to look like real captions, since
the later stages (noun filter, text-as-image training) must face the same problems as on MS-COCO:
synonyms ("disc", "raindrop"), plurals and counts ("three stars"), colour and size words, multi-word
names ("lightning bolt", "bow tie") and words that look like class names but are not nouns in context
("crossing", "starring", "square-shaped", "it drops"). Colour is mentioned in about a quarter of
mentions and several objects often share a colour, so a CLIP trained on them must learn shape, not
colour: the design that reached useful zero-shot quality on 2 CPU cores (see README).

Three disjoint parts (separate seed streams of :func:`sample_scenes`):
  (a) ``sample_scenes(n, seed, "pretrain", ...)``: scene specs for contrastive pretraining (captions drawn
      fresh each epoch), drawn by the pretraining stages;
and, written by :func:`write_tinyworld`,
  (b) ``captions/captions_tinyworld.json``: a text-only caption corpus in the MS-COCO captions format;
  (c) ``benchmark/``: labelled trainval and test images in the generic manifest format.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from tqdm import tqdm

from mlr_core.data.manifest import write_manifest_folder
from mlr_core.io import atomic_dir, atomic_write_text

CLASSES: tuple[str, ...] = (
    "circle", "square", "triangle", "star", "heart", "cross", "diamond", "hexagon", "ring", "crescent",
    "arrow", "bolt", "trapezoid", "house", "tree", "cloud", "drop", "bell", "flower", "hourglass",
)

# Caption-side names. Singular -> plural; the first entry is the class name itself.
SYNONYMS: dict[str, list[tuple[str, str]]] = {
    "circle": [("circle", "circles"), ("disc", "discs"), ("disk", "disks"), ("dot", "dots")],
    "square": [("square", "squares"), ("box", "boxes"), ("block", "blocks")],
    "triangle": [("triangle", "triangles"), ("wedge", "wedges")],
    "star": [("star", "stars"), ("pentagram", "pentagrams"), ("five-pointed star", "five-pointed stars")],
    "heart": [("heart", "hearts"), ("love heart", "love hearts")],
    "cross": [("cross", "crosses"), ("plus sign", "plus signs"), ("plus", "pluses")],
    "diamond": [("diamond", "diamonds"), ("rhombus", "rhombuses"), ("lozenge", "lozenges")],
    "hexagon": [("hexagon", "hexagons"), ("honeycomb cell", "honeycomb cells")],
    "ring": [("ring", "rings"), ("donut", "donuts"), ("hoop", "hoops"), ("doughnut", "doughnuts")],
    "crescent": [("crescent", "crescents"), ("half moon", "half moons"), ("crescent moon", "crescent moons")],
    "arrow": [("arrow", "arrows"), ("pointer", "pointers")],
    "bolt": [("bolt", "bolts"), ("lightning bolt", "lightning bolts"), ("zigzag", "zigzags")],
    "trapezoid": [("trapezoid", "trapezoids"), ("trapezium", "trapeziums")],
    "house": [("house", "houses"), ("hut", "huts"), ("cabin", "cabins")],
    "tree": [("tree", "trees"), ("pine tree", "pine trees"), ("fir", "firs")],
    "cloud": [("cloud", "clouds"), ("puff", "puffs")],
    "drop": [("drop", "drops"), ("raindrop", "raindrops"), ("droplet", "droplets"), ("teardrop", "teardrops")],
    "bell": [("bell", "bells"), ("church bell", "church bells")],
    "flower": [("flower", "flowers"), ("blossom", "blossoms"), ("daisy", "daisies")],
    "hourglass": [("hourglass", "hourglasses"), ("bow tie", "bow ties"), ("egg timer", "egg timers")],
}

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (210, 40, 40), "green": (40, 150, 60), "blue": (40, 80, 210), "yellow": (225, 190, 20),
    "orange": (240, 130, 20), "purple": (130, 50, 170), "pink": (230, 100, 170), "brown": (130, 80, 40),
    "black": (30, 30, 30), "gray": (120, 120, 120), "teal": (20, 140, 140), "navy": (25, 35, 100),
}
SIZES = {"small": 0.17, "medium": 0.24, "large": 0.32}  # object diameter as a fraction of the image side

NUMBER_WORDS = {2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven", 8: "eight"}

# Frames around the list of mentions. Some hold words that look like class names but are verbs or
# adjectives here; they never mean an object, so a good noun filter must not fire on them.
FRAMES = (
    "{}.", "a picture of {}.", "a photo of {}.", "an image with {}.", "there is {} here.",
    "{} on a plain background.", "a drawing of {}.", "a simple scene with {}.", "we can see {}.",
    "{} drawn on paper.", "a close up photo of {}.", "a small poster showing {}.",
)
TRAP_FRAMES = (
    "a cartoon starring {}.", "{} crossing the frame.", "{} in a square-shaped frame.",
    "a diamond-shaped sticker with {}.", "{} housed in a wooden frame.", "a drawing of {} that drops off the page.",
    "{} on a starry night.", "{}, crossing paths.", "a clouded photo of {}.", "{} ringing in the new year.",
    "a heart-warming picture of {}.", "{} bolted to a board.", "a flowering meadow poster with {}.",
)
TRAP_FRAME_PROB = 0.12
COLOUR_MENTION_PROB = 0.25
SIZE_MENTION_PROB = 0.1


@dataclass(frozen=True)
class SceneObject:
    cls: int
    colour: str
    size: str
    x: float  # centre, fraction of the side
    y: float
    angle: float  # degrees; small, so a square never becomes a diamond


@dataclass(frozen=True)
class Scene:
    objects: tuple[SceneObject, ...]
    background: tuple[int, int, int]

    @property
    def labels(self) -> list[int]:
        return sorted({o.cls for o in self.objects})

    def to_json(self) -> str:
        return json.dumps({"background": list(self.background), "objects": [asdict(o) for o in self.objects]})

    @staticmethod
    def from_json(text: str) -> "Scene":
        d = json.loads(text)
        return Scene(tuple(SceneObject(**o) for o in d["objects"]), tuple(d["background"]))


# ----------------------------------------------------------------------------------------------- scenes
def sample_scene(rng: np.random.Generator, min_objects: int = 1, max_objects: int = 4) -> Scene:
    n = int(rng.integers(min_objects, max_objects + 1))
    # Drawn with replacement: repeated classes are what make counted plurals ("two stars") in captions.
    classes = rng.choice(len(CLASSES), size=n, replace=True)
    # Images often share one or two colours among their objects, so colour does not identify a shape.
    palette = list(rng.choice(list(COLOURS), size=int(rng.integers(1, 3)), replace=False))
    if rng.random() < 0.35:
        palette = list(COLOURS)
    objects: list[SceneObject] = []
    for cls in classes:
        size = str(rng.choice(list(SIZES), p=[0.3, 0.4, 0.3]))
        r = SIZES[size] / 2
        for _ in range(30):  # rejection sampling keeps objects mostly apart
            x, y = rng.uniform(r + 0.02, 1 - r - 0.02, size=2)
            if all(math.hypot(x - o.x, y - o.y) > 0.8 * (r + SIZES[o.size] / 2) for o in objects):
                break
        objects.append(SceneObject(int(cls), str(rng.choice(palette)), size, float(x), float(y),
                                   float(rng.uniform(-15, 15))))
    background = tuple(int(v) for v in rng.integers(225, 256, size=3))
    return Scene(tuple(objects), background)


# --------------------------------------------------------------------------------------------- rendering
def _poly(points, cx=0.5, cy=0.5):
    return [(cx + px, cy + py) for px, py in points]


def _regular(n, r=0.5, phase=-math.pi / 2):
    return [(r * math.cos(phase + 2 * math.pi * k / n), r * math.sin(phase + 2 * math.pi * k / n)) for k in range(n)]


def _draw_shape(draw: ImageDraw.ImageDraw, name: str, s: float) -> None:
    """Draw class ``name`` filled with 255 in a square canvas of side ``s`` (unit coordinates scaled by s)."""
    def P(pts):
        return [(x * s, y * s) for x, y in pts]

    def E(x0, y0, x1, y1, fill=255, width=0):
        draw.ellipse([x0 * s, y0 * s, x1 * s, y1 * s], fill=fill if not width else None,
                     outline=255 if width else None, width=int(width * s))

    if name == "circle":
        E(0.05, 0.05, 0.95, 0.95)
    elif name == "square":
        draw.polygon(P([(0.1, 0.1), (0.9, 0.1), (0.9, 0.9), (0.1, 0.9)]), fill=255)
    elif name == "triangle":
        draw.polygon(P([(0.5, 0.05), (0.95, 0.9), (0.05, 0.9)]), fill=255)
    elif name == "star":
        pts = []
        for k in range(10):
            rr = 0.48 if k % 2 == 0 else 0.2
            a = -math.pi / 2 + math.pi * k / 5
            pts.append((rr * math.cos(a), rr * math.sin(a)))
        draw.polygon(P(_poly(pts, 0.5, 0.53)), fill=255)
    elif name == "heart":
        pts = []
        for k in range(60):
            t = 2 * math.pi * k / 60
            x = 16 * math.sin(t) ** 3
            y = 13 * math.cos(t) - 5 * math.cos(2 * t) - 2 * math.cos(3 * t) - math.cos(4 * t)
            pts.append((0.5 + x / 36, 0.45 - y / 36))
        draw.polygon(P(pts), fill=255)
    elif name == "cross":
        a, b = 0.36, 0.64
        draw.polygon(P([(a, 0.05), (b, 0.05), (b, a), (0.95, a), (0.95, b), (b, b), (b, 0.95), (a, 0.95),
                        (a, b), (0.05, b), (0.05, a), (a, a)]), fill=255)
    elif name == "diamond":
        draw.polygon(P([(0.5, 0.02), (0.8, 0.5), (0.5, 0.98), (0.2, 0.5)]), fill=255)
    elif name == "hexagon":
        draw.polygon(P(_poly(_regular(6, 0.47, 0))), fill=255)
    elif name == "ring":
        E(0.08, 0.08, 0.92, 0.92, width=0.17)
    elif name == "crescent":
        E(0.05, 0.05, 0.95, 0.95)
        E(0.3, -0.02, 1.12, 0.8, fill=0)
    elif name == "arrow":
        draw.polygon(P([(0.05, 0.4), (0.55, 0.4), (0.55, 0.15), (0.95, 0.5), (0.55, 0.85), (0.55, 0.6),
                        (0.05, 0.6)]), fill=255)
    elif name == "bolt":
        draw.polygon(P([(0.6, 0.02), (0.22, 0.55), (0.47, 0.55), (0.35, 0.98), (0.8, 0.4), (0.53, 0.4),
                        (0.7, 0.02)]), fill=255)
    elif name == "trapezoid":
        draw.polygon(P([(0.3, 0.22), (0.7, 0.22), (0.97, 0.78), (0.03, 0.78)]), fill=255)
    elif name == "house":
        draw.polygon(P([(0.5, 0.04), (0.93, 0.42), (0.8, 0.42), (0.8, 0.95), (0.2, 0.95), (0.2, 0.42),
                        (0.07, 0.42)]), fill=255)
    elif name == "tree":
        draw.polygon(P([(0.5, 0.02), (0.78, 0.4), (0.65, 0.4), (0.9, 0.75), (0.1, 0.75), (0.35, 0.4),
                        (0.22, 0.4)]), fill=255)
        draw.polygon(P([(0.42, 0.75), (0.58, 0.75), (0.58, 0.98), (0.42, 0.98)]), fill=255)
    elif name == "cloud":
        for x0, y0, x1, y1 in [(0.02, 0.4, 0.42, 0.8), (0.22, 0.2, 0.68, 0.66), (0.52, 0.32, 0.95, 0.75),
                               (0.25, 0.45, 0.75, 0.82)]:
            E(x0, y0, x1, y1)
    elif name == "drop":
        E(0.2, 0.38, 0.8, 0.98)
        draw.polygon(P([(0.5, 0.02), (0.78, 0.6), (0.22, 0.6)]), fill=255)
    elif name == "bell":
        E(0.25, 0.05, 0.75, 0.55)
        draw.polygon(P([(0.25, 0.3), (0.75, 0.3), (0.8, 0.7), (0.95, 0.82), (0.05, 0.82), (0.2, 0.7)]), fill=255)
        E(0.42, 0.8, 0.58, 0.96)
    elif name == "flower":
        for k in range(6):
            a = 2 * math.pi * k / 6
            cx, cy = 0.5 + 0.28 * math.cos(a), 0.5 + 0.28 * math.sin(a)
            E(cx - 0.17, cy - 0.17, cx + 0.17, cy + 0.17)
        E(0.38, 0.38, 0.62, 0.62, fill=0)
    elif name == "hourglass":
        draw.polygon(P([(0.15, 0.05), (0.85, 0.05), (0.55, 0.5), (0.85, 0.95), (0.15, 0.95), (0.45, 0.5)]),
                     fill=255)
    else:  # pragma: no cover - CLASSES and this table are kept together
        raise KeyError(name)


_SUPERSAMPLE = 3


def render_scene(scene: Scene, image_size: int) -> Image.Image:
    """Render a scene deterministically (no randomness: everything is in the spec)."""
    big = image_size * _SUPERSAMPLE
    img = Image.new("RGB", (big, big), scene.background)
    for o in scene.objects:
        side = max(4, int(round(SIZES[o.size] * big)))
        mask = Image.new("L", (side, side), 0)
        _draw_shape(ImageDraw.Draw(mask), CLASSES[o.cls], side)
        mask = mask.rotate(o.angle, resample=Image.BILINEAR)
        img.paste(COLOURS[o.colour], (int(o.x * big - side / 2), int(o.y * big - side / 2)), mask)
    return img.resize((image_size, image_size), Image.LANCZOS)


# ---------------------------------------------------------------------------------------------- captions
def _mention(cls: int, count: int, colour: str | None, size: str | None, rng: np.random.Generator) -> str:
    singular, plural = SYNONYMS[CLASSES[cls]][int(rng.integers(len(SYNONYMS[CLASSES[cls]])))]
    words = []
    if count > 1:
        words.append(NUMBER_WORDS.get(count, "several") if rng.random() < 0.8 else "some")
    if size is not None:
        words.append(size)
    if colour is not None:
        words.append(colour)
    words.append(plural if count > 1 else singular)
    if count == 1:
        words.insert(0, "an" if words[0][0] in "aeiou" else "a")
    return " ".join(words)


def _join(parts: list[str]) -> str:
    if len(parts) == 1:
        return parts[0]
    return ", ".join(parts[:-1]) + " and " + parts[-1]


def caption_scene(scene: Scene, rng: np.random.Generator, partial_prob: float = 0.0) -> str:
    """One caption. Objects of a class are grouped into one counted mention, mentions are shuffled.

    With ``partial_prob`` only a random non-empty subset of classes is named, as real captions do; it
    also teaches a CLIP that a single-class sentence fits a busy image that contains that class.
    """
    return caption_with_classes(scene, rng, partial_prob)[0]


def caption_with_classes(scene: Scene, rng: np.random.Generator, partial_prob: float = 0.0) -> tuple[str, list[int]]:
    """:func:`caption_scene` and the classes the caption names as objects: the ground truth of a noun
    filter (frame words such as "crossing" or "starring" never count)."""
    groups: dict[int, list[SceneObject]] = {}
    for o in scene.objects:
        groups.setdefault(o.cls, []).append(o)
    classes = list(groups)
    rng.shuffle(classes)
    if len(classes) > 1 and rng.random() < partial_prob:
        classes = classes[: int(rng.integers(1, len(classes)))]
    mentions = []
    for c in classes:
        objs = groups[c]
        colours = {o.colour for o in objs}
        colour = next(iter(colours)) if len(colours) == 1 and rng.random() < COLOUR_MENTION_PROB else None
        sizes = {o.size for o in objs}
        size = next(iter(sizes)) if len(sizes) == 1 and rng.random() < SIZE_MENTION_PROB else None
        mentions.append(_mention(c, len(objs), colour, size, rng))
    if len(mentions) == 2 and rng.random() < 0.25:  # a relation instead of a list
        body = f"{mentions[0]} {rng.choice(['next to', 'beside', 'near', 'above', 'below'])} {mentions[1]}"
    else:
        body = _join(mentions)
    frames = TRAP_FRAMES if rng.random() < TRAP_FRAME_PROB else FRAMES
    return frames[int(rng.integers(len(frames)))].format(body), [int(c) for c in classes]


# ------------------------------------------------------------------------------------------------ writing
# Independent seed streams make the three parts disjoint draws and let each part be regenerated alone.
_PART_STREAMS = {"pretrain": 1, "corpus": 2, "trainval": 3, "test": 4}


def part_rng(seed: int, part: str) -> np.random.Generator:
    return np.random.default_rng([seed, _PART_STREAMS[part]])


def sample_scenes(n: int, seed: int, part: str, min_objects: int, max_objects: int) -> list[Scene]:
    rng = part_rng(seed, part)
    return [sample_scene(rng, min_objects, max_objects) for _ in range(n)]


def write_tinyworld(out_dir: str | Path, *, seed: int, image_size: int, min_objects: int, max_objects: int,
                    n_corpus: int, captions_per_scene: int, n_trainval: int, n_test: int) -> dict:
    """Write parts (b) and (c) under ``out_dir`` atomically (all or nothing) and return a summary. Part (a), the
    pretraining scenes, is drawn by the pretraining stages themselves
    (``sample_scenes(n, seed, "pretrain", ...)``) and rendered in memory, so they need no DVC output."""
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        # (b) the text-only corpus in the MS-COCO captions layout (images + annotations with image_id).
        rng = part_rng(seed, "corpus")
        corpus_scenes = sample_scenes(n_corpus, seed, "corpus", min_objects, max_objects)
        images, annotations = [], []
        for i, s in enumerate(corpus_scenes):
            image_id = 1_000_000 + i
            images.append({"id": image_id, "file_name": f"tinyworld_corpus_{i:07d}.png",
                           "width": image_size, "height": image_size})
            for _ in range(captions_per_scene):
                annotations.append({"image_id": image_id, "id": len(annotations) + 1,
                                     "caption": caption_scene(s, rng, partial_prob=0.35)})
        (tmp / "captions").mkdir()
        (tmp / "captions" / "captions_tinyworld.json").write_text(json.dumps({
            "info": {"description": "tinyworld caption corpus (synthetic)", "version": "1.0"},
            "licenses": [], "images": images, "annotations": annotations}))

        # (c) the labelled benchmark in the generic manifest format.
        bench = tmp / "benchmark"
        (bench / "images").mkdir(parents=True)
        counts, images, splits, targets = {}, [], [], []
        for split, n in (("trainval", n_trainval), ("test", n_test)):
            (bench / "images" / split).mkdir()
            split_scenes = sample_scenes(n, seed, split, min_objects, max_objects)
            for i, s in enumerate(tqdm(split_scenes, desc=f"tinyworld {split}", unit="img")):
                rel = f"images/{split}/{split}_{i:06d}.png"
                render_scene(s, image_size).save(bench / rel, optimize=False, compress_level=1)
                images.append(rel)
                splits.append(split)
                targets.append(np.isin(np.arange(len(CLASSES)), s.labels).astype(np.int8))
            counts[split] = n
        write_manifest_folder(bench, images, splits, np.array(targets), list(CLASSES))
        summary = {"classes": len(CLASSES), "corpus_scenes": n_corpus,
                   "corpus_captions": len(annotations), **{f"{k}_images": v for k, v in counts.items()}}
        atomic_write_text(tmp / "summary.json", json.dumps(summary, indent=2))
    return summary
