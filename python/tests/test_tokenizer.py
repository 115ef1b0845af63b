"""`flexiffusion tokenize` against transformers' CLIPTokenizer on the real CLIP vocabulary (built
from open_clip's bpe_simple_vocab_16e6.txt.gz, as HF's vocab.json/merges.txt are) and a few hundred
varied prompts: punctuation, digits, accents, CJK, emoji, odd whitespace, very long ones; SD 1.x's
padding with <|endoftext|> and SD 2.x's with "!".

Needs `pip install transformers` and `pip install --no-deps open_clip_torch` (CI installs both).
"""
import json
import os
import random
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BIN = Path(os.environ.get("FLEXIFFUSION_BIN", REPO / ".build" / "debug" / "flexiffusion"))
sys.path.insert(0, str(REPO / "scripts" / "goldens"))
from make_tiny_sd_pipeline import write_clip_vocabulary  # noqa: E402


def prompts():
    base = [
        "a photograph of an astronaut riding a horse", "A Painting of a Fox, in the style of Van Gogh!!!",
        "it's a dog's life; they're here, we've gone, I'm sure you'll see what I'd do",
        "4k, 8K UHD, 1920x1080 @ 60fps -- trending on ArtStation (2024)", "café crème brûlée, naïve façade, ÅNGSTRÖM",
        "東京タワーの夜景、高精細", "一只猫在月光下", "Ελληνικά ΣΟΦΊΑ σοφία", "кошка на крыше", "مرحبا بالعالم",
        "emoji 🐱🚀✨ and flags 🇫🇷 and 👩‍👩‍👧", "tabs\tand\u00a0non-breaking\u2003spaces   many", "  leading and trailing  ",
        "<|startoftext|>already tokened<|endoftext|> text", "quotes \"double\" 'single' `back` «guillemets» “curly”",
        "math: x² + y³ = z⁴, ½ + ¼, π ≈ 3.14159, ∑∫√∞", "URL https://example.com/path?q=1&r=2#frag, e-mail a.b@c.de",
        "hyphen-ated, under_scored, CamelCaseWords, ALLCAPS, mIxEd", "ﬁne ligature ﬀ, full-width ＡＢＣ１２３",
        "Straße groß İstanbul ǅemal", "",
        "a " * 100 + "very long prompt that runs far past seventy-seven tokens",
    ]
    rng = random.Random(0)
    words = sum((p.split() for p in base), [])
    extra = []
    for _ in range(300):
        n = rng.randint(1, 30)
        extra.append(" ".join(rng.choice(words) for _ in range(n)) + rng.choice(["", ".", "!", " ,", "??", " :)", " 42"]))
    return base + extra


class TokenizerParity(unittest.TestCase):
    def test_ids_match_transformers(self):
        from transformers import CLIPTokenizer
        if not (BIN.is_file() and os.access(BIN, os.X_OK)):
            raise AssertionError(f"no flexiffusion binary at {BIN}: build it (swift build) or set FLEXIFFUSION_BIN")
        # (A prompt file skips blank lines, as every command reads it: the empty prompt is `--prompt ""`.)
        texts = [t for t in prompts() if t.strip()]
        with tempfile.TemporaryDirectory() as tmp:
            write_clip_vocabulary(tmp)
            with open(os.path.join(tmp, "prompts.txt"), "w") as f:
                f.write("\n".join(texts) + "\n")
            for pad in ("<|endoftext|>", "!"):
                with self.subTest(pad=pad):
                    with open(os.path.join(tmp, "special_tokens_map.json"), "w") as f:
                        json.dump({"pad_token": pad}, f)
                    reference = CLIPTokenizer.from_pretrained(tmp, pad_token=pad)
                    want = [reference(t, padding="max_length", max_length=77, truncation=True).input_ids for t in texts]
                    run = subprocess.run([str(BIN), "tokenize", "--tokenizer", tmp, "--prompts", os.path.join(tmp, "prompts.txt"),
                                          "--json"], capture_output=True, text=True)
                    self.assertEqual(run.returncode, 0, run.stderr)
                    got = json.loads(run.stdout)
                    self.assertEqual(len(got), len(texts))
                    bad = [(t, g, w) for t, g, w in zip(texts, got, want) if g != w]
                    for t, g, w in bad[:3]:
                        print(f"{t!r}:\n  engine       {g}\n  transformers {w}")
                    self.assertEqual(len(bad), 0, f"{len(bad)} of {len(texts)} prompts differ")
                    run = subprocess.run([str(BIN), "tokenize", "--tokenizer", tmp, "--prompt", "", "--json"], capture_output=True, text=True)
                    self.assertEqual(run.returncode, 0, run.stderr)
                    self.assertEqual(json.loads(run.stdout), [reference("", padding="max_length", max_length=77, truncation=True).input_ids])


if __name__ == "__main__":
    unittest.main()
