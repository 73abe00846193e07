"""Weights between PyTorch and tapegrad, as .npz state dicts.

A state dict in an .npz is one array per tensor, keyed by its name
("features.0.weight"), as np.savez writes it: tapegrad reads it with
tg::load_npz and loads it with Module::load_state_dict, and writes one with
Module::state_dict and tg::save_npz. Run with Debian's python3 and torch:

  /usr/bin/python3 scripts/torch_state_dict.py export MODEL.pt OUT.npz
      MODEL.pt is what torch.save wrote: a whole nn.Module (its class must be
      importable), a state dict, or a checkpoint dict holding one under
      "state_dict" or "model".
  /usr/bin/python3 scripts/torch_state_dict.py export --demo OUT.npz [--dtype float64]
      The small CNN below (seeded), whose tapegrad twin is in
      tests/test_state_dict.cpp.
  /usr/bin/python3 scripts/torch_state_dict.py import IN.npz [--model MODEL.pt] [--check CHECK.npz]
      Loads IN.npz (strictly) into MODEL.pt's module, or into the demo CNN,
      and prints the logits in evaluation mode for CHECK.npz's "input" (or
      for a seeded random [2, 3, 8, 8] batch); when CHECK.npz also has
      "logits" (from tapegrad: save_npz of {"input", "logits"}), prints the
      largest difference and fails if it is above 1e-5 (1e-12 in float64).
"""
import argparse
import sys

import numpy as np
import torch
from torch import nn


class DemoCNN(nn.Module):
    """PyTorch attribute names: features.0.weight, ..., classifier.weight."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16, momentum=None), nn.ReLU(),
            nn.AdaptiveAvgPool2d(2))
        self.classifier = nn.Linear(16 * 2 * 2, 10)

    def forward(self, x):
        return self.classifier(torch.flatten(self.features(x), 1))


def demo_model(dtype=torch.float32):
    """The demo CNN, seeded, with batch norm parameters and statistics that are not their defaults."""
    torch.manual_seed(0)
    model = DemoCNN().to(dtype)
    with torch.no_grad():
        for bn, batches in ((model.features[1], 3), (model.features[5], 5)):
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.5, 0.5)
            bn.running_mean.uniform_(-0.2, 0.2)
            bn.running_var.uniform_(0.5, 2.0)
            bn.num_batches_tracked.fill_(batches)
    return model


def state_dict_arrays(state):
    return {name: t.detach().cpu().numpy() for name, t in state.items()}


def read_state_dict(path):
    loaded = torch.load(path, map_location="cpu")
    if isinstance(loaded, nn.Module):
        return loaded.state_dict()
    for key in ("state_dict", "model"):
        if isinstance(loaded, dict) and isinstance(loaded.get(key), dict):
            loaded = loaded[key]
    return {k: v for k, v in loaded.items() if isinstance(v, torch.Tensor)}


def export(args):
    if args.demo:
        state = demo_model(getattr(torch, args.dtype)).state_dict()
    else:
        state = read_state_dict(args.source)
    np.savez(args.out, **state_dict_arrays(state))
    print(f"wrote {len(state)} tensors to {args.out}")


def import_(args):
    model = torch.load(args.model, map_location="cpu") if args.model else demo_model()
    with np.load(args.npz) as archive:
        state = {name: torch.from_numpy(archive[name]) for name in archive.files}
    dtype = next(iter(state.values())).dtype if state else torch.float32
    model = model.to(dtype if dtype.is_floating_point else torch.float32)
    model.load_state_dict(state, strict=True)
    model.eval()
    check = dict(np.load(args.check)) if args.check else {}
    if "input" in check:
        x = torch.from_numpy(check["input"])
    else:
        x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits = model(x.to(next(model.parameters()).dtype))
    print(f"loaded {len(state)} tensors from {args.npz}; logits in evaluation mode:")
    print(logits.numpy())
    if "logits" in check:
        diff = np.abs(logits.numpy() - check["logits"]).max()
        tol = 1e-12 if logits.dtype == torch.float64 else 1e-5
        print(f"largest difference from {args.check}'s logits: {diff:.3g} (tolerance {tol:g})")
        if not diff <= tol:
            sys.exit(1)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    e = commands.add_parser("export", help="a PyTorch state dict to .npz")
    e.add_argument("source", nargs="?", help="MODEL.pt")
    e.add_argument("out", help="OUT.npz")
    e.add_argument("--demo", action="store_true", help="the demo CNN instead of MODEL.pt")
    e.add_argument("--dtype", default="float32", choices=["float32", "float64"], help="the demo's dtype")
    i = commands.add_parser("import", help="an .npz state dict into a PyTorch model")
    i.add_argument("npz", help="IN.npz")
    i.add_argument("--model", help="MODEL.pt (a whole module); the demo CNN without it")
    i.add_argument("--check", help="CHECK.npz with 'input' and optionally 'logits' to compare")
    args = parser.parse_args()
    if args.command == "export":
        if args.demo == (args.source is not None):
            parser.error("export: give MODEL.pt or --demo, not both")
        export(args)
    else:
        import_(args)


if __name__ == "__main__":
    main()
