"""An offline stand-in for real vision data and encoders: coloured shapes with German captions,
and a tiny random CLIP vision encoder, for tests, benchmarks and trying the path with no hub.

    python -m mothertongue.vision.synthetic runs/shapes       # -> runs/shapes/{encoder,images,*.csv,text.txt}

`captions.csv` holds `image,caption` rows ("Ein roter Kreis auf blauem Grund."), `heldout.csv` the
colour/shape/background combinations never trained on, `questions.jsonl` LLaVA-format questions
("Welche Form ist auf dem Bild?" -> "Ein Kreis."), and `text.txt` German text-only
instruction#response lines for the run's text stages.
"""

from __future__ import annotations

import csv
import json
import random
import sys
from pathlib import Path

SHAPES = {"Kreis": "m", "Kreuz": "n", "Dreieck": "n"}
COLOURS = {"rot": (220, 30, 30), "grün": (30, 170, 40), "blau": (30, 60, 220), "gelb": (235, 210, 30),
           "braun": (120, 70, 20), "violett": (140, 40, 200)}
GROUNDS = {"weiß": (250, 250, 250), "schwarz": (10, 10, 10), "grau": (128, 128, 128), "blau": (40, 90, 250)}
# Never trained on: every shape, colour and background is seen, but not in these combinations.
HELDOUT = [("Kreis", "gelb", "grau"), ("Kreuz", "rot", "schwarz"), ("Dreieck", "blau", "weiß"),
           ("Kreis", "grün", "weiß"), ("Kreuz", "blau", "grau"), ("Dreieck", "rot", "grau"),
           ("Kreis", "braun", "blau"), ("Kreuz", "violett", "weiß"), ("Dreieck", "gelb", "blau"),
           ("Kreis", "violett", "schwarz")]


def caption(shape: str, colour: str, ground: str) -> str:
    ending = "er" if SHAPES[shape] == "m" else "es"
    return f"Ein {colour}{ending} {shape} auf {ground}em Grund."


def draw(shape: str, colour: str, ground: str, rng: random.Random, size: int = 32):
    return _draw_rgb(shape, COLOURS[colour], GROUNDS[ground], rng, size)


def _draw_rgb(shape: str, fill: tuple, ground: tuple, rng: random.Random, size: int = 32):
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (size, size), ground)
    d = ImageDraw.Draw(img)
    # Large and near the centre: the shape decides which of the encoder's patches it covers.
    r = rng.randint(size * 11 // 32, size * 14 // 32)
    cx, cy = size // 2 + rng.randint(-2, 2), size // 2 + rng.randint(-2, 2)
    box = (cx - r, cy - r, cx + r, cy + r)
    if shape == "Kreis":
        d.ellipse(box, fill=fill)
    elif shape == "Kreuz":
        # Thin arms leave the diagonals empty where a circle is filled: with arms half as wide as
        # the shape, 8 px patches saw crosses and circles alike and new colours swapped them.
        w = r // 4
        d.rectangle((cx - r, cy - w, cx + r, cy + w), fill=fill)
        d.rectangle((cx - w, cy - r, cx + w, cy + r), fill=fill)
    else:
        d.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=fill)
    return img


def combos(heldout: bool) -> list[tuple[str, str, str]]:
    every = [(s, c, g) for s in SHAPES for c in COLOURS for g in GROUNDS if c != g]
    return [x for x in every if (x in HELDOUT) == heldout]


def write_images(folder: Path, per_combo: int, heldout: bool, seed: int) -> list[tuple[str, str, str, str]]:
    rng = random.Random(seed)
    rows = []
    folder.mkdir(parents=True, exist_ok=True)
    for s, c, g in combos(heldout):
        for k in range(per_combo):
            name = f"{'h' if heldout else 't'}_{s}_{c}_{g}_{k}.png".replace("ü", "ue").replace("ß", "ss")
            draw(s, c, g, rng).save(folder / name)
            rows.append((f"images/{name}", s, c, g))
    return rows


def tiny_encoder(folder: Path, seed: int = 0, pretrain_steps: int = 300) -> Path:
    """A tiny CLIP vision encoder (hidden 32, 2 layers, 32 px images in 8 px patches) with its
    image processor, saved like a hub checkpoint. Like a real encoder it is pretrained, here for
    a few seconds on shapes in random colours (which shape, which colours): a random encoder's
    features tie shape to colour, and no projector then recognises a shape in a new colour."""
    import torch
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel

    torch.manual_seed(seed)
    cfg = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                           image_size=32, patch_size=8, projection_dim=32)
    enc = CLIPVisionModel(cfg)
    processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    if pretrain_steps:
        _pretrain(enc, processor, pretrain_steps, seed)
    enc.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def _pretrain(enc, processor, steps: int, seed: int) -> None:
    import torch

    rng = random.Random(seed)
    tokens = (32 // 8) ** 2 * enc.config.hidden_size  # the patch tokens the language model will see
    head = torch.nn.Linear(tokens, len(SHAPES) + 6)  # shape logits, shape RGB, ground RGB
    opt = torch.optim.Adam([*enc.parameters(), *head.parameters()], lr=3e-3)
    names = list(SHAPES)
    for _ in range(steps):
        imgs, shape, rgb = [], [], []
        for _ in range(32):
            k = rng.randrange(len(names))
            fg, bg = [tuple(rng.randrange(256) for _ in range(3)) for _ in range(2)]
            imgs.append(_draw_rgb(names[k], fg, bg, rng))
            shape.append(k)
            rgb.append([c / 255 for c in fg + bg])
        pixels = processor(images=imgs, return_tensors="pt")["pixel_values"]
        feats = enc(pixels, output_hidden_states=True).hidden_states[-2][:, 1:].flatten(1)
        out = head(feats)
        loss = torch.nn.functional.cross_entropy(out[:, :len(SHAPES)], torch.tensor(shape)) + \
            torch.nn.functional.mse_loss(out[:, len(SHAPES):], torch.tensor(rgb))
        opt.zero_grad()
        loss.backward()
        opt.step()
    enc.eval()


def make(folder: Path, per_combo: int = 6, seed: int = 0) -> Path:
    """Encoder, images, captions.csv, heldout.csv, questions.jsonl and text.txt under `folder`."""
    folder = Path(folder)
    tiny_encoder(folder / "encoder", seed)
    train = write_images(folder / "images", per_combo, False, seed)
    held = write_images(folder / "images", 2, True, seed + 1)
    for name, rows in (("captions.csv", train), ("heldout.csv", held)):
        with open(folder / name, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["image", "caption"])
            w.writerows((path, caption(s, c, g)) for path, s, c, g in rows)
    with open(folder / "questions.jsonl", "w", encoding="utf-8") as f:
        for path, s, c, _ in train:
            for q, a in (("Welche Form ist auf dem Bild?", f"Ein {s}."), ("Welche Farbe hat die Form?", f"{c.capitalize()}.")):
                row = {"image": path, "conversations": [{"from": "human", "value": f"<image>\n{q}"}, {"from": "gpt", "value": a}]}
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
    lines = [f"Welche Farbe hat {'der' if SHAPES[s] == 'm' else 'das'} {s}?#{c.capitalize()}." for s in SHAPES for c in COLOURS]
    lines += [f"Sag einen Satz über ein Bild.#{caption(s, c, g)}" for s in SHAPES for c in COLOURS for g in GROUNDS]
    (folder / "text.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


if __name__ == "__main__":
    print(make(Path(sys.argv[1] if len(sys.argv) > 1 else "shapes")))
