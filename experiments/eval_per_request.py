"""`eval()` before each `generate()` (a common server pattern) against `eval()` once, beside a same-shape MarianMTModel.

`eval()` on a model whose scores did not change must cost nothing. This times greedy (and beam)
generation of a batch both ways for a supermask model and for its `export_dense()` MarianMTModel (the same
computation, stock transformers), and prints the times and the ratios. Run on a quiet machine:

    python experiments/eval_per_request.py                 # IWSLT-small shape: d512, 6+6 layers, 8k vocabulary
    python experiments/eval_per_request.py --tiny          # a seconds-long smoke run

Inputs are fixed random token ids (timing only; no output is judged) and every sequence is forced to its full length.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from hf_supermask import SupermaskConfig, SupermaskForConditionalGeneration


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--d_model", type=int, default=512)
    parser.add_argument("--layers", type=int, default=6, help="encoder and decoder layers each")
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--ffn_dim", type=int, default=2048)
    parser.add_argument("--vocab_size", type=int, default=8000)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--source_length", type=int, default=16)
    parser.add_argument("--new_tokens", type=int, default=16)
    parser.add_argument("--beams", type=int, nargs="+", default=[1, 5])
    parser.add_argument("--repetitions", type=int, default=5, help="requests per measurement (the median counts)")
    parser.add_argument("--tiny", action="store_true", help="a tiny model and batch: a smoke run, not a measurement")
    args = parser.parse_args()
    if args.tiny:
        args.d_model, args.layers, args.heads, args.ffn_dim, args.vocab_size = 32, 2, 4, 64, 320
        args.batch_size, args.source_length, args.new_tokens, args.repetitions = 2, 5, 3, 2
    return args


def _time_requests(model, inputs, generate_kwargs, repetitions: int, eval_each_request: bool) -> float:
    """Median seconds of one request (`eval()` first if asked, then `generate`)."""
    model.eval()
    with torch.inference_mode():
        model.generate(**inputs, **generate_kwargs)  # warm-up: folds, allocator, kernels
    times = []
    for _ in range(repetitions):
        start = time.perf_counter()
        if eval_each_request:
            model.eval()
        with torch.inference_mode():
            model.generate(**inputs, **generate_kwargs)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    args = _parse_args()
    config = SupermaskConfig(
        vocab_size=args.vocab_size,
        d_model=args.d_model,
        encoder_layers=args.layers,
        decoder_layers=args.layers,
        encoder_attention_heads=args.heads,
        decoder_attention_heads=args.heads,
        encoder_ffn_dim=args.ffn_dim,
        decoder_ffn_dim=args.ffn_dim,
        max_position_embeddings=max(128, args.source_length + args.new_tokens + 1),
        dropout=0.0,
    )
    supermask = SupermaskForConditionalGeneration(config).eval()
    models = {"supermask": supermask, "MarianMTModel (export_dense)": supermask.export_dense().eval()}
    generator = torch.Generator().manual_seed(0)
    # Ids above the special tokens (</s>=0, <unk>=1; <pad> is the last id), each source ending in </s>.
    input_ids = torch.randint(2, args.vocab_size - 1, (args.batch_size, args.source_length), generator=generator)
    input_ids[:, -1] = config.eos_token_id
    inputs = {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids)}
    print(
        f"shape: d_model={args.d_model}, {args.layers}+{args.layers} layers, ffn {args.ffn_dim}, vocab "
        f"{args.vocab_size}; batch {args.batch_size} x {args.new_tokens} new tokens; torch threads "
        f"{torch.get_num_threads()}; median of {args.repetitions} requests"
    )
    print("| decoding | model | eval() once | eval() per request | per request / once |")
    print("|---|---|---|---|---|")
    for beams in args.beams:
        kwargs = dict(num_beams=beams, max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens)
        seconds = {}
        for name, model in models.items():
            once = _time_requests(model, inputs, kwargs, args.repetitions, eval_each_request=False)
            each = _time_requests(model, inputs, kwargs, args.repetitions, eval_each_request=True)
            seconds[name] = (once, each)
            print(f"| beam {beams} | {name} | {once * 1000:.1f} ms | {each * 1000:.1f} ms | {each / once:.3f} |")
        (s_once, s_each), (m_once, m_each) = seconds.values()
        print(
            f"| beam {beams} | supermask / Marian time | {s_once / m_once:.3f} | {s_each / m_each:.3f} | "
            f"(goal: Marian's speed x >= 0.95, i.e. time ratio <= {1 / 0.95:.3f}) |"
        )


if __name__ == "__main__":
    main()
