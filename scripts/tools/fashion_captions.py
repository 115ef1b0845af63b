"""Fashion-MNIST as captioned images, for Flexiffusion's shipped text-to-image model and its CLIP.

Each 28×28 item is drawn on a 32×32 canvas with attributes the caption then states, so that every
caption is true of its image: size (large: 26–32 px, centred; small: 14–18 px), position for small
items (left, right, top, bottom, centre), brightness (bright: full contrast; dim: half), and
inversion (a dark item on a white background). Captions come from templates over the label's names
("a pair of sneakers", "a small dim ankle boot on the left", "a photo of a dress on a white
background"). `class_prompts()` are the ten zero-shot captions ("a photo of a …").

The vocabulary: CLIP's byte-level BPE scheme (transformers' CLIPTokenizer reads it) with merges
learned from the captions here, so the token embedding is ~1,000 rows, not CLIP's 49,408; words
outside it are spelled in byte tokens.
"""
import gzip
import json
import os
import random
from collections import Counter

import numpy as np

DATA = "/usr/share/datasets/fashion-mnist"
SIDE = 32

# Label names: (singular noun phrase, plural used with "a pair of" or None, other words for it)
CLASSES = [
    ("t-shirt", None, ["top", "tee", "t-shirt"]),
    ("pair of trousers", "trousers", ["trousers", "pants", "pair of trousers"]),
    ("pullover", None, ["pullover", "sweater", "jumper"]),
    ("dress", None, ["dress"]),
    ("coat", None, ["coat", "jacket"]),
    ("sandal", "sandals", ["sandal"]),
    ("shirt", None, ["shirt"]),
    ("sneaker", "sneakers", ["sneaker", "trainer"]),
    ("bag", None, ["bag", "handbag"]),
    ("ankle boot", "ankle boots", ["ankle boot", "boot"]),
]


def load(split="train", folder=DATA):
    """Images [N, 28, 28] uint8 and labels [N] of `split` (train or t10k)."""
    with gzip.open(os.path.join(folder, f"{split}-images-idx3-ubyte.gz")) as f:
        raw = f.read()
    n = int.from_bytes(raw[4:8], "big")
    images = np.frombuffer(raw, dtype=np.uint8, offset=16).reshape(n, 28, 28)
    with gzip.open(os.path.join(folder, f"{split}-labels-idx1-ubyte.gz")) as f:
        labels = np.frombuffer(f.read(), dtype=np.uint8, offset=8)
    return images, labels.astype(np.int64)


def draw_attributes(rng):
    size = "small" if rng.random() < 0.35 else "large"
    position = rng.choice(["left", "right", "top", "bottom", "centre"]) if size == "small" else "centre"
    brightness = "dim" if rng.random() < 0.25 else "bright"
    inverted = rng.random() < 0.2
    return dict(size=size, position=position, brightness=brightness, inverted=inverted)


def _resize(item, side):
    from PIL import Image
    return np.asarray(Image.fromarray(item).resize((side, side), Image.BILINEAR))


def render(item, attrs, rng):
    """The 28×28 uint8 item on a 32×32 canvas (uint8) as `attrs` say."""
    canvas = np.zeros((SIDE, SIDE), dtype=np.float32)
    if attrs["size"] == "large":
        side = rng.randint(26, 32)
        y = x = (SIDE - side) // 2
    else:
        side = rng.randint(14, 18)
        margin = rng.randint(0, 2)
        centre = (SIDE - side) // 2
        y, x = {"left": (centre, margin), "right": (centre, SIDE - side - margin), "top": (margin, centre),
                "bottom": (SIDE - side - margin, centre), "centre": (centre, centre)}[attrs["position"]]
    canvas[y:y + side, x:x + side] = _resize(item, side) if side != 28 else item
    if attrs["brightness"] == "dim":
        canvas *= 0.5
    if attrs["inverted"]:
        canvas = 255 - canvas
    return canvas.round().clip(0, 255).astype(np.uint8)


def caption(label, attrs, rng):
    """A true caption of an item of `label` drawn with `attrs`."""
    singular, plural, names = CLASSES[label]
    if plural and rng.random() < 0.4:
        noun, article = f"pair of {plural}", "a"
    else:
        noun = rng.choice(names) if rng.random() < 0.5 else singular
        article = "an" if noun[0] in "aeiou" else "a"
    words = []
    if attrs["size"] == "small" and rng.random() < 0.8:
        words.append("small")
    elif attrs["size"] == "large" and rng.random() < 0.3:
        words.append("large")
    if rng.random() < 0.7 or attrs["brightness"] == "dim":
        words.append(attrs["brightness"] if attrs["brightness"] == "dim" or rng.random() < 0.5 else "bright")
    adjectives = " ".join(words)
    phrase = (adjectives + " " + noun) if adjectives else noun
    article = "an" if phrase[0] in "aeiou" else "a"
    if noun.startswith("pair of"):
        article = "a"
    where = ""
    if attrs["size"] == "small" and attrs["position"] != "centre" and rng.random() < 0.85:
        where = {"left": " on the left", "right": " on the right", "top": " at the top", "bottom": " at the bottom"}[attrs["position"]]
    ground = " on a white background" if attrs["inverted"] and rng.random() < 0.9 else ""
    template = rng.choice(["{a} {p}{w}{g}", "a photo of {a} {p}{w}{g}", "a picture of {a} {p}{w}{g}"])
    return template.format(a=article, p=phrase, w=where, g=ground)


def class_prompts():
    """The ten zero-shot captions, in label order."""
    return [f"a photo of a {'pair of ' + p if p else s}" if p else f"a photo of {'an' if s[0] in 'aeiou' else 'a'} {s}"
            for s, p, _ in CLASSES]


def sample_batch(images, labels, n, rng):
    """n random (image 32×32 uint8, caption, label) triples."""
    idx = [rng.randrange(len(images)) for _ in range(n)]
    out = []
    for i in idx:
        attrs = draw_attributes(rng)
        out.append((render(images[i], attrs, rng), caption(int(labels[i]), attrs, rng), int(labels[i])))
    return out


# The tokenizer: CLIP's scheme (lower-cased words, byte-level symbols, "</w>" ending a word) with a small vocabulary.
def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def corpus(n=20000, seed=0):
    rng = random.Random(seed)
    texts = class_prompts() + [f"a pair of {p}" for _, p, _ in CLASSES if p]
    for _ in range(n):
        label = rng.randrange(10)
        texts.append(caption(label, draw_attributes(rng), rng))
    return texts


def learn_bpe(texts, merges=600):
    """BPE merges over the words of `texts` (CLIP's pre-tokenisation: lower case, words and
    punctuation; a word's last symbol carries "</w>")."""
    import regex
    pat = regex.compile(r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""", regex.IGNORECASE)
    b2u = bytes_to_unicode()
    words = Counter()
    for t in texts:
        for w in pat.findall(t.lower()):
            sym = [b2u[b] for b in w.encode("utf-8")]
            sym[-1] += "</w>"
            words[tuple(sym)] += 1
    result = []
    for _ in range(merges):
        pairs = Counter()
        for w, c in words.items():
            for a, b in zip(w, w[1:]):
                pairs[(a, b)] += c
        if not pairs:
            break
        (a, b), count = pairs.most_common(1)[0]
        if count < 2:
            break
        result.append((a, b))
        merged = Counter()
        for w, c in words.items():
            out, i = [], 0
            while i < len(w):
                if i + 1 < len(w) and w[i] == a and w[i + 1] == b:
                    out.append(a + b)
                    i += 2
                else:
                    out.append(w[i])
                    i += 1
            merged[tuple(out)] += c
        words = merged
    return result


def write_tokenizer(folder, seed=0):
    """vocab.json, merges.txt and the special tokens of a CLIPTokenizer over this module's captions."""
    os.makedirs(folder, exist_ok=True)
    merges = learn_bpe(corpus(seed=seed))
    base = list(bytes_to_unicode().values())
    vocab = base + [v + "</w>" for v in base] + ["".join(m) for m in merges] + ["<|startoftext|>", "<|endoftext|>"]
    with open(os.path.join(folder, "vocab.json"), "w") as f:
        json.dump({t: i for i, t in enumerate(vocab)}, f, ensure_ascii=False)
    with open(os.path.join(folder, "merges.txt"), "w") as f:
        f.write("#version: 0.2\n" + "\n".join(f"{a} {b}" for a, b in merges) + "\n")
    with open(os.path.join(folder, "special_tokens_map.json"), "w") as f:
        json.dump({"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>",
                   "unk_token": "<|endoftext|>"}, f)
    with open(os.path.join(folder, "tokenizer_config.json"), "w") as f:
        json.dump({"model_max_length": 77, "tokenizer_class": "CLIPTokenizer", "bos_token": "<|startoftext|>",
                   "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>", "unk_token": "<|endoftext|>",
                   "do_lower_case": True}, f)
    return len(vocab)


if __name__ == "__main__":
    rng = random.Random(1)
    for _ in range(12):
        label = rng.randrange(10)
        print(CLASSES[label][0], "→", caption(label, draw_attributes(rng), rng))
    print(class_prompts())
