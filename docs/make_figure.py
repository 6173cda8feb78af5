"""Render the README figure: original | heatmap | annotated, for one image and query.

    python docs/make_figure.py --model openai/clip-vit-large-patch14-336 \
        --image examples/street.png --query "What color is the car?" -o docs/figure.png
    python docs/make_figure.py --model shapes-clip --image examples/shapes_scene.png \
        --query "where is the orange square?" --layer=-6..-1 --no-comp --scale 5   # the committed figure

Any model the library loads works (hub id, local folder, open_clip name).
"""

from __future__ import annotations

import argparse

from PIL import Image, ImageDraw

from attnprompt import Prompter
from attnprompt.config import parse_layers


def triptych(panels: list[tuple[str, Image.Image]], caption: str) -> Image.Image:
    w, h = panels[0][1].size
    pad, title = 8, 22
    canvas = Image.new("RGB", (len(panels) * (w + pad) + pad, h + 2 * title + pad), "white")
    draw = ImageDraw.Draw(canvas)
    for i, (name, img) in enumerate(panels):
        x = pad + i * (w + pad)
        canvas.paste(img, (x, title))
        draw.text((x, 5), name, fill="black")
    draw.text((pad, title + h + 5), caption, fill="black")
    return canvas


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="openai/clip-vit-large-patch14-336")
    parser.add_argument("--image", default="examples/street.png")
    parser.add_argument("--query", default="What color is the car?")
    parser.add_argument("--preset", default=None)
    parser.add_argument("--caption", default=None)
    parser.add_argument("--layer", default=None, help="psi_cls blocks, e.g. -6..-1 (default: the preset's)")
    parser.add_argument("--no-comp", action="store_true", help="drop the complementary map")
    parser.add_argument("--scale", type=int, default=1, help="enlarge the panels (nearest neighbour) for display")
    parser.add_argument("-o", "--output", default="docs/figure.png")
    args = parser.parse_args()
    overrides: dict = {}
    if args.layer:
        overrides["layers"] = parse_layers([args.layer])
    if args.no_comp:
        overrides["comp_layer"] = None
    prompter = Prompter(args.model, preset=args.preset, device="cpu", **overrides)
    [res] = prompter.annotate(args.image, args.query)
    caption = args.caption or f'query: "{args.query}"   auxiliary: {args.model}'
    panels = [("original", res.original), ("attention map", res.heatmap()), ("API-annotated", res.image)]
    if args.scale > 1:
        panels = [(name, img.resize((img.width * args.scale, img.height * args.scale), Image.Resampling.NEAREST))
                  for name, img in panels]
    fig = triptych(panels, caption)
    fig.save(args.output, optimize=True)
    print(args.output)


if __name__ == "__main__":
    main()
