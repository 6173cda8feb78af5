"""The ``attnprompt`` command line: parse, call the library, print."""

from __future__ import annotations

import argparse
import os
import re
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

if TYPE_CHECKING:
    from .jobs import JobSummary
    from .prompter import Prompter

from .config import (GEOMETRIES, INTERPOLATIONS, LVLM_PRESETS, PRESETS, REDUCTIONS, get_preset, parse_key_values,
                     parse_layers)
from .errors import AttnPromptError
from .outputs import IMAGE_FORMATS, ImageEncoding
from .styles import STYLES

EXAMPLES = """\
examples:
  # the whole pipeline offline with the shipped shapes-world models: an HTML report
  attnprompt demo --out attnprompt-demo

  # one image, the paper's CLIP (downloaded once from the Hugging Face hub)
  attnprompt annotate photo.jpg --query "What is the man holding?" -o prompted.png

  # the official settings exactly, a local model folder, and the raw maps
  attnprompt annotate photo.jpg -q "What is the man holding?" -o out.png \\
      --model ./clip-vit-large-patch14-336 --preset official --save-maps

  # several images, one question for all (outputs DIR/<name>.png and DIR/manifest.jsonl)
  attnprompt annotate a.jpg b.jpg c.jpg -q "What is the man holding?" --out-dir prompted/

  # a picture for people: original | heatmap with a colour bar | prompt, captioned
  attnprompt figure examples/shapes_scene.png -q "where is the orange square?" --model shapes-clip -o fig.png

  # the web app (http://127.0.0.1:7860; offline it starts on the shipped shapes models)
  attnprompt app

  # a dataset: rows {"id": ..., "image": ..., "question": ...} in JSONL or CSV
  attnprompt annotate --manifest questions.jsonl --out-dir prompted/ --batch-size 16

  # open_clip: architecture + pretrained tag or weights file, or a custom config
  attnprompt annotate photo.jpg -q "..." -o out.png --backend open_clip \\
      --model ViT-B-16 --pretrained laion2b_s34b_b88k
  attnprompt annotate photo.jpg -q "..." -o out.png --model-config my_vit.json \\
      --pretrained my_vit.safetensors

  # the paper's multi-layer variant: sum psi_cls over the last four blocks
  attnprompt annotate photo.jpg -q "..." -o out.png --layer -4..-1

  # an LVLM as auxiliary: the attention of its own answer to the image is the map
  attnprompt annotate photo.jpg -q "..." -o out.png --aux lvlm --model llava-hf/llava-1.5-7b-hf \\
      --layer 20 --reduction official --max-new-tokens 20 --highlight "red"

  # self-prompting: the same LVLM answers on the original, then on its own annotated image
  attnprompt self-prompt photo.jpg -q "What is written on the sign?" --model llava-hf/llava-1.5-7b-hf

exit status: 0 all done, 1 some manifest rows or eval items failed (see the output manifest or the
run's answers), 2 bad input.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="attnprompt",
        description="Attention Prompting on Image: query-guided attention masks from CLIP for VLMs.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--debug", action="store_true", help="show full tracebacks")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    ann = sub.add_parser(
        "annotate", help="annotate images with attention masks", epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Annotate one image (IMAGE --query TEXT -o OUT), several with one question "
                    "(IMAGE... --query TEXT --out-dir DIR) or a manifest (--manifest FILE --out-dir DIR).",
    )
    ann.add_argument("image", nargs="*", help="input image(s)")
    ann.add_argument("-q", "--query", help="the question or instruction about the image(s)")
    ann.add_argument("-o", "--output", help="output image path (one image; default IMAGE_api.png)")
    ann.add_argument("--manifest", help="JSONL or CSV with columns id, image, question (batch mode)")
    ann.add_argument("--out-dir", help="output folder (several images, or --manifest)")
    _model_options(ann, batch=True)
    _mask_options(ann)
    output = ann.add_argument_group("output")
    output.add_argument("--format", choices=("rgb", "rgba", "heatmap"), default="rgb",
                        help="annotated image, mask as alpha, or heatmap (default: rgb)")
    output.add_argument("--save-maps", action="store_true", help="also write the raw maps and the mask (.npz)")
    output.add_argument("--image-format", choices=IMAGE_FORMATS, default="png",
                        help="batch mode: file format of the outputs (default: png, lossless: exactly the "
                             "annotated pixels; jpeg and webp are lossy and smaller)")
    output.add_argument("--quality", type=int, help="jpeg/webp quality 1-100 (default: 95 jpeg, 90 webp)")
    output.add_argument("--png-compress-level", type=int, default=1,
                        help="zlib level 0-9 for png (default: 1 with the RLE strategy: fast, still lossless)")
    output.add_argument("--quiet", action="store_true", help="no progress bar")
    engine = ann.add_argument_group("engine (batch mode)")
    engine.add_argument("--engine", choices=("local", "ray"), default="local",
                        help="local: threads on this machine; ray: Ray Data actors on a local or remote Ray cluster")
    engine.add_argument("--ray-address", default=None,
                        help="Ray cluster to join (e.g. ray://head:10001 or auto; default: start a local one)")
    engine.add_argument("--gpus-per-worker", type=float, default=0.0,
                        help="ray: GPUs per model actor (e.g. 1, or 0.5 for two actors per GPU; default 0)")
    engine.add_argument("--cpus-per-worker", type=float, default=1.0,
                        help="ray: CPUs per model actor; Ray sets its torch threads to this (default 1)")

    selfp = sub.add_parser(
        "self-prompt", help="an LVLM answers on the original image, then on its own annotated image",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    selfp.add_argument("image", help="input image")
    selfp.add_argument("-q", "--query", required=True, help="the question about the image")
    selfp.add_argument("-o", "--output", help="also save the annotated image here")
    _model_options(selfp, lvlm=True)
    _mask_options(selfp, lvlm=True)
    selfp.add_argument("--quiet", action="store_true", help="no progress bars")

    pr = sub.add_parser("presets", help="list the presets, and the per-benchmark presets eval uses, with their sources")
    pr.add_argument("--presets-dir", default=None,
                    help="also list the preset files naming a benchmark in this folder (default: $ATTNPROMPT_PRESETS_DIR)")

    fig = sub.add_parser(
        "figure", help="a picture for people: original | heatmap with a colour bar | prompt, captioned",
        description="Writes OUT.png: the original, the attention map (with a colour bar) and the prompt image "
                    "side by side, with the question, the auxiliary's answer (LVLM) and the settings as caption.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    fig.add_argument("image", help="input image")
    fig.add_argument("-q", "--query", required=True, help="the question or instruction about the image")
    fig.add_argument("-o", "--output", help="output PNG (default IMAGE_figure.png)")
    fig.add_argument("--caption", help="caption text (default: the question and the settings)")
    _model_options(fig)
    _mask_options(fig)
    fig.add_argument("--quiet", action="store_true", help="no progress bars")

    demo = sub.add_parser(
        "demo", help="run the whole pipeline offline on shapes-world scenes and write an HTML report",
        description="Masks from the shipped shapes-clip and shapes-llava, answers of shapes-llava on the original "
                    "and the annotated scenes, written as OUT/index.html (no download needed).",
    )
    demo.add_argument("--out", default="attnprompt-demo", help="output folder (default: attnprompt-demo)")
    demo.add_argument("--clip", default="shapes-clip", help="CLIP auxiliary (default: the shipped shapes-clip)")
    demo.add_argument("--target", default="shapes-llava",
                      help="target VLM, also the LVLM auxiliary (default: the shipped shapes-llava)")
    demo.add_argument("--device", default="cpu", help="cpu (default), cuda, mps or auto")
    demo.add_argument("--quiet", action="store_true", help="print only the report's path")

    app = sub.add_parser(
        "app", help="the web app: upload an image, ask, see the map and the prompt, ask a target",
        description="A Gradio page served on http://HOST:PORT (offline it starts on the shipped shapes models).",
    )
    app.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    app.add_argument("--port", type=int, default=None, help="port (default: Gradio's, 7860 or the next free one)")
    app.add_argument("--share", action="store_true", help="also make a temporary public link through Gradio")
    app.add_argument("--auth", default=None,
                     help="require a login: USER:PASSWORD (comma-separated for several) or @FILE (one per line)")
    app.add_argument("--examples", default=None, help="folder of example images (default: ./examples)")
    app.add_argument("--device", default="cpu", help="cpu (default), cuda, mps or auto")
    app.add_argument("--dtype", default=None, help="float32 (default), float16, bfloat16")

    ev = sub.add_parser(
        "eval", help="score a target VLM on a benchmark under several conditions (original, api-clip, ...)",
        description="Answers of a target model on a benchmark's images, original and attention-prompted, scored "
                    "with the benchmark's official scorer; writes OUT/{answers,scores.json,table.md,table.csv,report.html} "
                    "and prints the table. Rerun the same command to resume.",
    )
    ev.add_argument("--conditions", default="original,api-clip",
                    help="comma-separated: original, api-clip, api-lvlm, step-by-step, masked-hint, "
                         "self-reflection, api-clip+self-reflection, api-clip-or-original...; a masked one takes a "
                         "prompt style and mask settings after colons: api-clip:blur, api-lvlm:crop:margin=0.5, "
                         "api-clip:kernel=1 (default: original,api-clip)")
    ev.add_argument("--masks-dir", default=None, help="where annotated images are kept and reused (default OUT/masks)")
    _benchmark_options(ev)

    tn = sub.add_parser(
        "tune", help="grid over mask knobs and prompt styles on a validation split; the best as a preset file",
        description="For one auxiliary, one target and one benchmark: each knob of the mask (layers, comp layer, "
                    "enhance, kernel, gray, geometry, style...) one at a time around the base preset, then every "
                    "knob at its best value; each setting an eval run (original and the prompt) with a paired "
                    "bootstrap CI. Writes OUT/{tune.json,table.md,preset.json,ablation.png,index.html}; "
                    "rerun the same command to resume. Choose on a validation split; test once with "
                    "`attnprompt eval --preset OUT/preset.json`.",
        epilog="examples:\n  attnprompt tune --benchmark vizwiz --data shapes-val --target shapes-llava "
               "--aux-clip shapes-clip --out runs/tune --limit 300\n"
               "  attnprompt tune ... --grid kernel=1,3,5 --grid layers=-1,-2,-3..-1,all --grid comp_layer=-2,none",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _benchmark_options(tn)
    tn.add_argument("--grid", action="append", metavar="KNOB=V1,V2",
                    help="values of one knob (repeatable): layers (a layer, a range a..b, or all), comp_layer "
                         "(or none), enhance, kernel, interpolation, gray, geometry, style... "
                         "(default: a grid over every knob)")
    tn.add_argument("--no-combine", action="store_true", help="skip the setting with every knob at its best value")
    tn.add_argument("--examples", type=int, default=6, help="example items shown in index.html (default 6)")

    rep = sub.add_parser("report", help="merge eval run folders into one table")
    rep.add_argument("runs", nargs="+", help="folders written by attnprompt eval")
    rep.add_argument("--out", default=None, help="also write table.md and table.csv into this folder")
    return parser


def _benchmark_options(ev: argparse.ArgumentParser) -> None:
    """The data, target and auxiliary options shared by ``eval`` and ``tune``."""
    ev.add_argument("--benchmark", required=True,
                    help="mmvet, llavabench, pope, mme, textvqa, vizwiz, mmbench or mmmu")
    ev.add_argument("--data", required=True,
                    help="the benchmark's folder (layouts: docs/benchmarks.md), or hf:ORG/NAME[@split] / "
                         "hf:FOLDER[@split] to read a Hugging Face copy through `datasets`")
    ev.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                    help="a reader option (repeatable), e.g. splits=random, images_dir=DIR, subjects=Math,Art, "
                         "prompt_suffix=... (an unknown key is refused with the list of the reader's options)")
    ev.add_argument("--target", required=True, help="target model: hub id / folder (local), or a served model name")
    ev.add_argument("--endpoint", default=None,
                    help="OpenAI-compatible base URL (vLLM, SGLang, OpenAI): the target is served there")
    ev.add_argument("--api-key-env", default="OPENAI_API_KEY", help="environment variable holding the API key")
    ev.add_argument("--aux-clip", default=None, help="CLIP auxiliary for api-clip conditions "
                    "(default: openai/clip-vit-large-patch14-336)")
    ev.add_argument("--aux-lvlm", default=None, help="LVLM auxiliary for api-lvlm conditions (default: the target)")
    ev.add_argument("--preset", default=None, metavar="NAME|FILE",
                    help="mask preset for every auxiliary: a name or a preset file (.json) (default: the "
                         "benchmark's preset (see `attnprompt presets`), else the model's own preset file, else "
                         "the project default)")
    ev.add_argument("--presets-dir", default=None,
                    help="a folder of preset files naming a benchmark (e.g. written by attnprompt tune); they "
                         "extend the per-benchmark table (default: $ATTNPROMPT_PRESETS_DIR)")
    ev.add_argument("--judge", default=None, help="judge model for MM-Vet / LLaVA-Bench (e.g. gpt-4o-2024-08-06)")
    ev.add_argument("--judge-endpoint", default=None, help="OpenAI-compatible base URL of the judge")
    ev.add_argument("--out", required=True, help="run folder")
    ev.add_argument("--limit", type=int, default=None, help="first N questions (groups for MMBench, images for MME)")
    ev.add_argument("--batch-size", type=int, default=8)
    ev.add_argument("--max-new-tokens", type=int, default=None, help="answer length (default 128; 512 for judged)")
    ev.add_argument("--concurrency", type=int, default=8, help="parallel requests to an endpoint")
    ev.add_argument("--device", default=None, help="auto (default), cpu, cuda, mps")
    ev.add_argument("--dtype", default=None, help="float32 (default), float16, bfloat16")
    ev.add_argument("--quiet", action="store_true", help="no progress bars")


def _shipped_names() -> list[str]:
    """The models shipped in the package (read from its folder; no torch import for --help)."""
    folder = Path(__file__).resolve().parent / "shapes" / "models"
    return sorted(p.name for p in folder.iterdir() if (p / "config.json").is_file()) if folder.is_dir() else []


def _model_options(parser: argparse.ArgumentParser, *, lvlm: bool = False, batch: bool = False) -> None:
    """Model options; ``lvlm``: the command needs a vision-language model (no CLIP-only options)."""
    model = parser.add_argument_group("model")
    shipped = ", ".join(_shipped_names())
    if lvlm:
        model.add_argument("--model", default=None,
                           help="the vision-language model: hub id (llava-hf/llava-1.5-7b-hf) or local folder; "
                                "shipped, offline: shapes-llava (required)")
        parser.set_defaults(aux="lvlm", backend="auto", pretrained=None, model_config=None)
    else:
        model.add_argument("--aux", choices=("auto", "clip", "lvlm"), default="auto",
                           help="auxiliary kind: a CLIP or a vision-language model (default: from the model's config)")
        model.add_argument("--model", default=None,
                           help="hub id, local folder or open_clip architecture; shipped in the package and working "
                                f"offline: {shipped} (shapes-world scenes only; default: the paper's "
                                "openai/clip-vit-large-patch14-336, from the hub)")
        model.add_argument("--backend", default="auto",
                           help="CLIP through transformers (hf) or open_clip, or a registered backend (default: auto)")
        model.add_argument("--pretrained", help="open_clip pretrained tag or local weights file")
        model.add_argument("--model-config", help="open_clip model-config JSON for a custom architecture")
    model.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default: auto)")
    model.add_argument("--dtype", default="float32", help="float32, float16 or bfloat16 (default: float32)")
    if batch:
        model.add_argument("--batch-size", type=int, default=8, help="images per forward pass (default: 8)")
        model.add_argument("--workers", type=int, default=None,
                           help="batch mode: image decoding threads (local engine, default 4) or model actors "
                                "(--engine ray, default 1)")
    else:
        parser.set_defaults(batch_size=1, workers=None)


def _mask_options(parser: argparse.ArgumentParser, *, lvlm: bool = False) -> None:
    mask = parser.add_argument_group("mask (each overrides the preset)")
    mask.add_argument("--preset", default=None, metavar="NAME|FILE",
                      help=f"named settings ({', '.join(sorted(set(PRESETS) | set(LVLM_PRESETS)))}) or a preset "
                           "file (.json); default: the model folder's attnprompt_preset.json if it has one, else "
                           "default ('official' reproduces the official code)")
    mask.add_argument("--layer", action="append", metavar="L",
                      help="block(s) for the map: 22, -2, a range 20..23 / -4..-1; repeatable")
    if lvlm:  # the complementary map is CLIP's
        parser.set_defaults(comp_layer=None, no_comp=False)
    else:
        mask.add_argument("--comp-layer", type=int, help="CLIP: block after which the residual gives psi_comp")
        mask.add_argument("--no-comp", action="store_true", help="CLIP: drop the complementary map psi_comp")
    mask.add_argument("--enhance", type=float, help="sharpening coefficient (official: 5)")
    mask.add_argument("--kernel", type=int, help="odd mean-filter size in token space (official: 3)")
    mask.add_argument("--interpolation", type=str.lower, choices=INTERPOLATIONS, help="map resize filter")
    mask.add_argument("--gray", type=int, help="background level 0-255 that masked regions fade to")
    mask.add_argument("--geometry", type=str.lower, choices=GEOMETRIES,
                      help="stretch (official), aligned (the grid lands where the model looked), tiled (CLIP: "
                           "native-scale crops stitched, one forward per crop) or auto (aligned up to 5:4, tiled "
                           "beyond; aligned for an LVLM)")
    mask.add_argument("--kernel-grid", type=int, metavar="N",
                      help="the grid side --kernel is defined for; rescaled to the map's grid (default presets: 24)")
    mask.add_argument("--no-kernel-grid", action="store_true", help="--kernel tokens on any grid (official)")
    mask.add_argument("--strict-order", dest="strict_order", action="store_true", default=None,
                      help="enhance and final normalisation keep the raw map's order (no saturated ties)")
    mask.add_argument("--no-strict-order", dest="strict_order", action="store_false",
                      help="the official enhance (saturates into ties)")
    mask.add_argument("--style", type=str.lower, metavar="STYLE",
                      help=f"prompt style: {', '.join(STYLES)} (default: alpha, the official blend)")
    mask.add_argument("--style-param", action="append", metavar="KEY=VALUE", default=None,
                      help="a style parameter, e.g. floor=0.3, margin=0.5, radius=0.05; repeatable "
                           "(see 'attnprompt presets')")
    mask.add_argument("--reduction", type=str.lower, choices=REDUCTIONS,
                      help="LVLM: official (softmax over the image span) or paper (attention weights)")
    mask.add_argument("--max-new-tokens", type=int, help="LVLM: length of the auxiliary answer (official: 20)")
    mask.add_argument("--highlight", help="LVLM: use only the answer tokens that spell this text")


def _mask_overrides(args: argparse.Namespace) -> dict:
    overrides = {
        "enhance": args.enhance, "kernel": args.kernel, "interpolation": args.interpolation,
        "gray": args.gray, "geometry": args.geometry, "reduction": args.reduction,
        "max_new_tokens": args.max_new_tokens,
    }
    if args.highlight is not None:
        overrides["highlight"] = args.highlight
    if args.no_kernel_grid:
        overrides["kernel_grid"] = None
    elif args.kernel_grid is not None:
        overrides["kernel_grid"] = args.kernel_grid
    if args.strict_order is not None:
        overrides["strict_order"] = args.strict_order
    if args.style is not None:
        overrides["style"] = args.style
    if args.style_param:
        overrides["style_params"] = parse_key_values(args.style_param, "--style-param")
    if args.layer:
        overrides["layers"] = parse_layers(args.layer)
    if args.no_comp:
        overrides["comp_layer"] = None
    elif args.comp_layer is not None:
        overrides["comp_layer"] = args.comp_layer
    return {k: v for k, v in overrides.items() if v is not None or k in ("comp_layer", "kernel_grid")}


def _load_prompter(args: argparse.Namespace) -> "Prompter":
    from .auxiliary.hub import fail_fast_if_unavailable
    from .config import DEFAULT_MODEL

    # before torch is imported: an unavailable hub id costs a second, not many
    if not args.model_config or Path(args.model_config).is_file():
        config_name = Path(args.model_config).stem if args.model_config else None
        fail_fast_if_unavailable(args.model or config_name or DEFAULT_MODEL, args.pretrained)
    from .prompter import Prompter

    if args.batch_size < 1:
        raise AttnPromptError("--batch-size must be at least 1")
    if args.quiet:
        _quiet_loading()
    overrides = _mask_overrides(args)
    if args.aux in ("clip", "lvlm"):
        get_preset(args.preset, kind=args.aux, **overrides)  # validate before loading a model
    prompter = Prompter(
        args.model or DEFAULT_MODEL, kind=args.aux, preset=args.preset, backend=args.backend,
        pretrained=args.pretrained, model_config=args.model_config, device=args.device, dtype=args.dtype,
        **overrides,
    )
    if prompter.kind == "clip":
        lvlm_only = [f"--{k.replace('_', '-')}" for k in ("reduction", "max_new_tokens", "highlight")
                     if getattr(args, k) is not None]
        if lvlm_only:
            raise AttnPromptError(f"{', '.join(lvlm_only)} only apply to an LVLM auxiliary (--aux lvlm)")
    return prompter


def _annotate(args: argparse.Namespace) -> int:
    from .files import atomic_save_image, read_manifest, safe_stem

    if bool(args.image) == bool(args.manifest):
        raise AttnPromptError("give either IMAGE... --query TEXT, or --manifest FILE --out-dir DIR")
    if args.image and args.query is None:
        raise AttnPromptError("--query is required with an IMAGE")
    single = len(args.image) == 1 and not args.out_dir
    if not single and not args.out_dir:
        raise AttnPromptError("--out-dir is required with --manifest or several images")
    if args.output and not single:
        raise AttnPromptError("-o names one output image; with several images use --out-dir DIR")
    if args.workers is not None and args.workers < 1:
        raise AttnPromptError("--workers must be at least 1")
    encoding = ImageEncoding(args.image_format, args.quality, args.png_compress_level)
    if encoding.format == "jpeg" and args.format == "rgba":
        raise AttnPromptError("JPEG cannot store the rgba output (no alpha channel): use png or webp")
    if args.engine == "ray" and single:
        raise AttnPromptError("--engine ray runs a job: give --manifest FILE (or several images) and --out-dir DIR")
    # fail fast, before loading a model
    rows = read_manifest(args.manifest) if args.manifest else None if single else _image_rows(args.image, args.query)
    if args.engine == "ray":
        return _annotate_ray(args, rows or [], encoding)
    prompter = _load_prompter(args)
    from .jobs import run_manifest, save_maps

    if single:
        output = Path(args.output) if args.output else Path(f"{safe_stem(Path(args.image[0]).stem)}_api.png")
        [result] = prompter.annotate([args.image[0]], [args.query])
        output.parent.mkdir(parents=True, exist_ok=True)
        atomic_save_image(result.render(args.format), output)
        print(output)
        for n, extra in enumerate((result.images or [])[1:], start=2):  # e.g. vicrop's crop
            extra_path = output.with_name(f"{output.stem}_{n}{output.suffix}")
            atomic_save_image(extra, extra_path)
            print(extra_path)
        if result.boxes:
            print("boxes: " + " ".join(",".join(str(v) for v in b) for b in result.boxes))
        if result.answer is not None:
            print(f"auxiliary answer: {result.answer}")
        if args.save_maps:
            maps_path = output.with_suffix(".npz")
            save_maps(maps_path, result)
            print(maps_path)
        return 0
    summary = run_manifest(
        prompter, rows or [], args.out_dir, format=args.format, save_map_files=args.save_maps,
        batch_size=args.batch_size, workers=args.workers or 4, progress=not args.quiet, encoding=encoding,
    )
    return _job_report(summary)


def _annotate_ray(args: argparse.Namespace, rows: list, encoding: "ImageEncoding") -> int:
    try:
        from .integrations.ray import RayJobOptions, run_manifest_ray  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        raise AttnPromptError("the ray engine is not available in this installation") from None

    if args.batch_size < 1:
        raise AttnPromptError("--batch-size must be at least 1")
    if args.gpus_per_worker < 0 or args.cpus_per_worker <= 0:
        raise AttnPromptError("--gpus-per-worker must be at least 0 and --cpus-per-worker above 0")
    options = RayJobOptions(
        model=args.model, kind=args.aux, preset=args.preset, backend=args.backend, pretrained=args.pretrained,
        model_config=args.model_config, device=args.device, dtype=args.dtype, overrides=_mask_overrides(args),
    )
    summary = run_manifest_ray(
        options, rows, args.out_dir, format=args.format, save_map_files=args.save_maps, batch_size=args.batch_size,
        workers=args.workers or 1, gpus_per_worker=args.gpus_per_worker, cpus_per_worker=args.cpus_per_worker,
        address=args.ray_address,
        encoding=encoding, progress=not args.quiet,
    )
    return _job_report(summary)


def _job_report(summary: "JobSummary") -> int:
    print(f"{summary.done} done, {summary.skipped} already done, {summary.failed} failed "
          f"of {summary.total}; manifest: {summary.manifest}")
    for line in summary.errors[:10]:
        print(f"  failed: {line}", file=sys.stderr)
    if len(summary.errors) > 10:
        print(f"  ... and {len(summary.errors) - 10} more (see the manifest)", file=sys.stderr)
    return 0 if summary.ok else 1


def _image_rows(images: list[str], query: str) -> list:
    """Several images with one question as manifest rows; ids are the file names (the paths if
    two files share a name)."""
    from .files import ManifestRow

    stems = [Path(p).stem for p in images]
    ids = stems if len(set(stems)) == len(stems) else [str(Path(p)) for p in images]
    if len(set(ids)) != len(ids):
        raise AttnPromptError("an image is given twice")
    return [ManifestRow(id=i, image=str(Path(p).resolve()), question=query, line=n + 1)
            for n, (i, p) in enumerate(zip(ids, images))]


def _figure(args: argparse.Namespace) -> int:
    from .config import DEFAULT_MODEL
    from .figure import figure
    from .files import atomic_save_image, safe_stem

    output = Path(args.output) if args.output else Path(f"{safe_stem(Path(args.image).stem)}_figure.png")
    prompter = _load_prompter(args)
    [result] = prompter.annotate([args.image], [args.query])
    picture = figure(result, model=args.model or DEFAULT_MODEL, preset=args.preset, caption=args.caption)
    output.parent.mkdir(parents=True, exist_ok=True)
    atomic_save_image(picture, output, format="PNG")
    print(output)
    return 0


def _quiet_loading() -> None:
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    except ImportError:
        pass


def _self_prompt(args: argparse.Namespace) -> int:
    from .files import atomic_save_image
    from .prompter import self_prompt

    if not args.model:
        raise AttnPromptError("self-prompting needs a vision-language model: --model llava-hf/llava-1.5-7b-hf, "
                              "a local folder, or the shipped shapes-llava (offline)")
    prompter = _load_prompter(args)
    result = self_prompt(prompter, args.image, args.query)
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        atomic_save_image(result.annotation.image, args.output)
        print(f"annotated image: {args.output}")
    print(f"answer on the original image:  {result.original_answer}")
    print(f"answer on the annotated image: {result.prompted_answer}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    say = None if args.quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
    index = run_demo(args.out, clip=args.clip, target=args.target, device=args.device, progress=say)
    print(index)
    return 0


def _app(args: argparse.Namespace) -> int:
    try:
        import gradio  # noqa: F401
    except ImportError:
        raise AttnPromptError("the app needs Gradio: pip install 'attnprompt[app]'") from None
    from .app import build_app, launch, parse_auth

    auth = parse_auth(args.auth)
    launch(build_app(device=args.device, dtype=args.dtype, examples=args.examples),
           host=args.host, port=args.port, share=args.share, auth=auth)
    return 0


def _target_and_judge(args: argparse.Namespace) -> tuple[Any, Any]:
    """The target (local or served) and the judge of ``eval`` / ``tune``, answers cached under OUT."""
    from .bench.benchmarks import BENCHMARKS
    from .targets import AnswerCache

    judged = BENCHMARKS[args.benchmark].scorer.endswith("-judge")
    max_new = args.max_new_tokens if args.max_new_tokens is not None else (512 if judged else 128)
    out = Path(args.out)
    cache = AnswerCache(out / "cache")
    target: Any
    if args.endpoint:
        from .targets import OpenAIEndpointTarget

        target = OpenAIEndpointTarget(args.target, base_url=args.endpoint, api_key_env=args.api_key_env,
                                      max_concurrency=args.concurrency, cache=cache, max_tokens=max_new)
    else:
        from .targets.hf import HFTarget

        target = HFTarget(args.target, device=args.device, dtype=args.dtype, max_new_tokens=max_new,
                          batch_size=args.batch_size, cache=cache)
    judge = None
    if args.judge:
        from .targets import OpenAIEndpointTarget

        judge = OpenAIEndpointTarget(args.judge, base_url=args.judge_endpoint, api_key_env=args.api_key_env,
                                     max_concurrency=args.concurrency, cache=AnswerCache(out / "judge-cache"))
    return target, judge


def _benchmark_data(args: argparse.Namespace) -> tuple[dict, list]:
    """The reader options and the items of ``eval`` / ``tune``, read and checked before any model loads."""
    from .bench.benchmarks import BENCHMARKS
    from .bench.benchmarks import load_data

    if args.benchmark not in BENCHMARKS:
        raise AttnPromptError(f"unknown benchmark {args.benchmark!r}; known: {', '.join(BENCHMARKS)}")
    for option in ("batch_size", "max_new_tokens", "concurrency", "limit"):
        value = getattr(args, option, None)
        if value is not None and value < 1:  # checked before any data is read or model loaded
            raise AttnPromptError(f"--{option.replace('_', '-')} must be at least 1, got {value}")
    options = _reader_options(args.benchmark, args.option, hub=str(args.data).startswith("hf:"))
    items = load_data(args.benchmark, args.data, limit=args.limit, **options)
    if not items:
        raise AttnPromptError(f"{args.benchmark}: no items to evaluate in {args.data}")
    return options, items


def _eval(args: argparse.Namespace) -> int:
    from .auxiliary.dispatch import DEFAULT_MODEL
    from .bench.conditions import get_conditions
    from .bench.presets import benchmark_preset
    from .bench.run import evaluate, format_table

    get_conditions(args.conditions)  # a typo fails before any work
    for kind in ("clip", "lvlm"):
        benchmark_preset(args.benchmark, kind, args.preset, args.presets_dir)  # a bad preset too
    options, items = _benchmark_data(args)
    target, judge = _target_and_judge(args)
    out = Path(args.out)
    lvlm = args.aux_lvlm
    if lvlm is None and "lvlm" in args.conditions and not args.endpoint:
        from .prompter import Prompter

        chosen, _ = benchmark_preset(args.benchmark, "lvlm", args.preset, args.presets_dir)
        lvlm = Prompter(args.target, kind="lvlm", preset=chosen, auxiliary=target.model)  # shares the weights
    result = evaluate(args.benchmark, args.data, target, args.conditions, out, clip=args.aux_clip or DEFAULT_MODEL,
                      lvlm=lvlm, preset=args.preset, masks_dir=args.masks_dir, presets_dir=args.presets_dir,
                      judge=judge, limit=args.limit,
                      data_options=options, items=items, batch_size=args.batch_size, progress=not args.quiet,
                      device=args.device, dtype=args.dtype)
    print(format_table([result]), end="")
    masks = result.get("masks") or {}
    if masks.get("computed") or masks.get("reused"):
        print(f"masks: {masks['computed']} computed, {masks['reused']} reused", file=sys.stderr)
    print(f"results: {out.resolve()}", file=sys.stderr)
    failed = {name: c["errors"] for name, c in result["conditions"].items() if c.get("errors")}
    if failed:  # exit 1, as annotate does when rows fail: the scores cover only the answered items
        shown = ", ".join(f"{name}: {n} of {result['n_items']}" for name, n in failed.items())
        print(f"some items failed ({shown}); see {out / 'answers'}; rerun to retry them", file=sys.stderr)
        return 1
    return 0


def _tune(args: argparse.Namespace) -> int:
    from .auxiliary.dispatch import DEFAULT_MODEL
    from .bench.tune import format_tune_table, parse_grid, tune
    from .prompter import Prompter

    if args.examples < 0:
        raise AttnPromptError("--examples must be 0 or more")
    if args.quiet:
        _quiet_loading()
    from .bench.presets import benchmark_preset

    kind = "lvlm" if args.aux_lvlm and not args.aux_clip else "clip"
    base, _ = benchmark_preset(args.benchmark, kind, args.preset, args.presets_dir)  # eval's preset is the base
    options, _ = _benchmark_data(args)
    target, judge = _target_and_judge(args)
    if kind == "lvlm":
        shared = args.aux_lvlm == args.target and not args.endpoint
        prompter = Prompter(args.aux_lvlm, kind="lvlm", preset=base, device=args.device,
                            auxiliary=target.model if shared else None)
    else:
        prompter = Prompter(args.aux_clip or DEFAULT_MODEL, kind="clip", preset=base, device=args.device)
    grid = parse_grid(args.grid, int(getattr(prompter.auxiliary, "num_layers", 0) or 0)) if args.grid else None
    document = tune(args.benchmark, args.data, target, args.out, auxiliary=prompter, kind=kind, grid=grid,
                    combine=not args.no_combine, judge=judge, limit=args.limit, data_options=options,
                    batch_size=args.batch_size, examples=args.examples, progress=not args.quiet)
    print(format_tune_table(document), end="")
    out = Path(args.out).resolve()
    print(f"chosen: {document['chosen']} -> {out / 'preset.json'} (use it with --preset {out / 'preset.json'})")
    print(f"plots and examples: {out / 'index.html'}", file=sys.stderr)
    return 0


def _reader_options(benchmark: str, pairs: Sequence[str], *, hub: bool = False) -> dict:
    """``--option KEY=VALUE`` pairs -> reader keyword options, typed by the reader's defaults
    (``true``/``false`` for a flag, numbers for a number; ``\\n`` in text is a newline); an
    unknown key is refused in one line. ``hub``: data read through ``datasets`` (``hf:``), which
    also takes ``image_cache_dir`` and ``config`` (the dataset configuration)."""
    import inspect

    from .bench.benchmarks import BENCHMARKS

    spec = BENCHMARKS[benchmark]
    params = inspect.signature(spec.reader).parameters
    allowed = spec.options() + ([k for k in ("image_cache_dir", "config") if k not in spec.options()] if hub else [])
    out: dict = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise AttnPromptError(f"--option {pair!r}: expected KEY=VALUE")
        if key not in allowed:
            raise AttnPromptError(f"{benchmark} has no option {key!r}; its options: {', '.join(allowed)}")
        default = params[key].default if key in params else None
        if isinstance(default, bool):
            if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise AttnPromptError(f"--option {key}: expected true or false, got {value!r}")
            out[key] = value.lower() in ("true", "1", "yes")
        elif isinstance(default, int):
            try:
                out[key] = int(value)
            except ValueError:
                raise AttnPromptError(f"--option {key}: expected an integer, got {value!r}") from None
        else:
            out[key] = value.replace("\\n", "\n").replace("\\t", "\t")
    return out


def _report(args: argparse.Namespace) -> int:
    from .bench.run import format_table, read_results, write_table

    results = read_results(args.runs)
    print(format_table(results), end="")
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        md, _ = write_table(results, args.out)
        print(f"wrote {md} and table.csv", file=sys.stderr)
    return 0


def _presets(args: argparse.Namespace) -> int:
    from .bench.benchmarks import BENCHMARKS
    from .bench.presets import benchmark_presets
    from .config import CLIP_ONLY_FIELDS, LVLM_ONLY_FIELDS
    from .geometry import AUTO_MAX_ASPECT, auto_forwards

    for kind, table in (("clip", PRESETS), ("lvlm", LVLM_PRESETS)):
        unused = LVLM_ONLY_FIELDS if kind == "clip" else CLIP_ONLY_FIELDS
        for name, cfg in table.items():
            settings = ", ".join(f"{k}={v}" for k, v in cfg.to_dict().items() if k not in unused)
            print(f"{kind:4s} {name:12s} {settings}")
    print(f"\ngeometry auto (CLIP): aligned up to {AUTO_MAX_ASPECT:g}:1 (5:4), tiled beyond; CLIP forwards per image:")
    print("  " + ", ".join(f"{label} {auto_forwards(a)}" for label, a in (
        ("1:1", 1.0), ("5:4", 1.25), ("4:3", 4 / 3), ("3:2", 1.5), ("16:9", 16 / 9), ("2:1", 2.0), ("3:1", 3.0))))
    print("\nstyles (--style NAME, --style-param KEY=VALUE):")
    for style in STYLES.values():
        params = ", ".join(f"{k}={p.default}" for k, p in style.params.items()) or "no parameters"
        print(f"  {style.name:8s} {style.description} [{params}]")
    print("\na model folder's attnprompt_preset.json is what 'default' means for that model")
    print("\nper benchmark (attnprompt eval without --preset; see attnprompt.bench.presets for the precedence):")
    per_benchmark = benchmark_presets(getattr(args, "presets_dir", None))
    for bench in dict.fromkeys([*BENCHMARKS, *(b for b, _ in per_benchmark)]):
        for kind in ("clip", "lvlm"):
            entry = per_benchmark.get((bench, kind))
            if entry is None:
                print(f"{bench:10s} {kind:4s} default")
                continue
            unused = LVLM_ONLY_FIELDS if kind == "clip" else CLIP_ONLY_FIELDS
            settings = ", ".join(f"{k}={v}" for k, v in entry.config.to_dict().items() if k not in unused)
            print(f"{bench:10s} {kind:4s} {settings}\n{'':15s} source: {entry.source}")
    return 0


def _one_line_warnings(message, category, filename, lineno, line=None) -> str:  # type: ignore[no-untyped-def]
    return f"warning: {message}\n"


_LAYER_VALUE = re.compile(r"^-\d+(\.\.-?\d+)?(,-?\d+(\.\.-?\d+)?)*$")


def _glue_negative_values(argv: list[str]) -> list[str]:
    """``--layer -4..-1`` -> ``--layer=-4..-1``: argparse takes only plain negative numbers as values."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        if argv[i] in ("--layer", "--comp-layer") and i + 1 < len(argv) and _LAYER_VALUE.match(argv[i + 1]):
            out.append(f"{argv[i]}={argv[i + 1]}")
            i += 2
        else:
            out.append(argv[i])
            i += 1
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(_glue_negative_values(list(sys.argv[1:] if argv is None else argv)))
    if not args.debug:
        warnings.formatwarning = _one_line_warnings
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    try:
        if args.command == "annotate":
            return _annotate(args)
        if args.command == "self-prompt":
            return _self_prompt(args)
        if args.command == "figure":
            return _figure(args)
        if args.command == "presets":
            return _presets(args)
        if args.command == "demo":
            return _demo(args)
        if args.command == "app":
            return _app(args)
        if args.command == "eval":
            return _eval(args)
        if args.command == "tune":
            return _tune(args)
        if args.command == "report":
            return _report(args)
        parser.print_help()
        return 2
    except AttnPromptError as exc:
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; finished rows are kept, rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
