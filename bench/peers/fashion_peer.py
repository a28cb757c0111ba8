"""Python peer of bench/fashion_long_bench.py: the classic PyTorch script with Kennel's recipe.

  train     torchvision ImageFolder + DataLoader (shuffle, --workers worker processes), fp32,
            torch.set_num_threads(--threads); AdamW (torch's defaults but lr and weight decay),
            the learning rate set before every optimizer step by the formula of Kennel's
            src/kennel/train/schedule.cpp (linear warm-up over --warmup-epochs, then cosine from
            --lr down to --lr-min at the last step of --epochs), cross-entropy with
            --label-smoothing, RandomResizedCrop(input, scale=(--augment-scale, 1), antialiased)
            + RandomHorizontalFlip for training, Resize(--resize) + CenterCrop(input) for
            evaluation, Normalize(--mean, --std). After every epoch it evaluates valid/ (as the
            classic train/val loop does, and as a Kennel job does), saves the model's state dict
            to --out/epoch-NNN.pt and prints `epoch=N saved_at=<unix time> path=...`. The test
            split is never read here.
  evaluate  test accuracy of each saved state dict on ROOT/test (the evaluation transform,
            fp32): one `path=... accuracy=... samples=...` line each.

Models: resnet18 (random init, fc replaced by Linear(512, classes)) or mobilenet_v2 started
from --pretrained, a .safetensors state dict with torchvision names (Kennel's converted
Keras MobileNetV2): its features load strictly, the classifier (Dropout(0.2), Linear(1280,
classes)) is new, as in Kennel. --keras-same-padding gives torchvision's mobilenet_v2 the two
things the Keras model was trained with: TensorFlow "same" padding on the five stride-2
convolutions (computed from the input size: at even sizes nothing before, one pixel after,
where torchvision pads one pixel on both sides) and BatchNorm eps 1e-3; that is what Kennel's
keras_compat model does (src/kennel/models/mobilenet_v2.h), so both sides run the same network.
Run with Debian's /usr/bin/python3 (torch 1.13, torchvision 0.14).
"""
import argparse
import json
import math
import struct
import sys
import time
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F
from torchvision import datasets, models, transforms

SAFETENSORS_DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "I64": torch.int64,
                      "I32": torch.int32, "U8": torch.uint8}


def read_safetensors(path):
    """The state dict in a .safetensors file (the format is a length, a JSON header and the raw bytes)."""
    data = Path(path).read_bytes()
    if len(data) < 8:
        sys.exit(f"fashion_peer: {path} is not a safetensors file (shorter than its 8-byte header length)")
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + length])
    body = memoryview(data)[8 + length:]
    state = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        if entry["dtype"] not in SAFETENSORS_DTYPES:
            sys.exit(f"fashion_peer: {path}: tensor {name} has dtype {entry['dtype']}, not one this peer reads")
        begin, end = entry["data_offsets"]
        tensor = torch.frombuffer(bytearray(body[begin:end]), dtype=SAFETENSORS_DTYPES[entry["dtype"]])
        state[name] = tensor.reshape(entry["shape"]).clone()
    return state


class TfSamePad:
    """A forward pre-hook: TensorFlow "same" padding before a stride-s, kernel-k convolution, from the input size."""

    def __init__(self, kernel, stride):
        self.kernel, self.stride = kernel, stride

    def pads(self, size):
        out = math.ceil(size / self.stride)
        total = max((out - 1) * self.stride + self.kernel - size, 0)
        return total // 2, total - total // 2

    def __call__(self, conv, inputs):
        (x,) = inputs
        top, bottom = self.pads(x.shape[2])
        left, right = self.pads(x.shape[3])
        return (F.pad(x, (left, right, top, bottom)),)


def keras_mobilenet_v2(model):
    """torchvision's mobilenet_v2 made the Keras network: TF "same" padding on stride-2 convs, BN eps 1e-3.
    The padding is a pre-hook, so the state dict keeps torchvision's names (Kennel's model.pth loads as is)."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d) and module.stride[0] == 2:
            module.padding = (0, 0)
            module.register_forward_pre_hook(TfSamePad(module.kernel_size[0], module.stride[0]))
        elif isinstance(module, nn.BatchNorm2d):
            module.eps = 1e-3
    return model


def build_model(args, num_classes):
    if args.arch == "resnet18":
        model = models.resnet18(weights=None)
        model.fc = nn.Linear(model.fc.in_features, num_classes)
        return model
    model = models.mobilenet_v2(weights=None, num_classes=num_classes)
    if args.pretrained:
        state = {k: v for k, v in read_safetensors(args.pretrained).items() if k.startswith("features.")}
        missing, unexpected = model.load_state_dict(state, strict=False)
        missing = [k for k in missing if not k.startswith("classifier.")]
        if missing or unexpected:
            sys.exit(f"fashion_peer: {args.pretrained} does not fit torchvision's mobilenet_v2: "
                     f"missing {missing[:5]}, unexpected {unexpected[:5]}")
    if args.keras_same_padding:
        model = keras_mobilenet_v2(model)
    return model


def eval_transform(args):
    return transforms.Compose([transforms.Resize(args.resize), transforms.CenterCrop(args.input_size),
                               transforms.ToTensor(), transforms.Normalize(args.mean, args.std)])


def lr_at(step, args, steps_per_epoch):
    """Kennel's LrSchedule::lr_at for the cosine schedule with linear warm-up."""
    warmup_steps = args.warmup_epochs * steps_per_epoch
    if warmup_steps > 0 and step < warmup_steps:
        return args.lr * (step + 1) / warmup_steps
    total_steps = steps_per_epoch * args.epochs
    span = max(1.0, total_steps - warmup_steps)
    progress = min(max((step - warmup_steps) / span, 0.0), 1.0)
    return args.lr_min + (args.lr - args.lr_min) * 0.5 * (1.0 + math.cos(math.pi * progress))


def accuracy_on(model, loader):
    model.eval()
    right = seen = 0
    with torch.no_grad():
        for inputs, labels in loader:
            right += (model(inputs).argmax(1) == labels).sum().item()
            seen += labels.numel()
    return right / max(seen, 1), seen


def train(args):
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    augment = transforms.Compose([
        transforms.RandomResizedCrop(args.input_size, scale=(args.augment_scale, 1.0)),
        transforms.RandomHorizontalFlip(), transforms.ToTensor(), transforms.Normalize(args.mean, args.std)])
    train_set = datasets.ImageFolder(f"{args.root}/train", transform=augment)
    loader = torch.utils.data.DataLoader(train_set, batch_size=args.batch_size, shuffle=True,
                                         num_workers=args.workers)
    valid_loader = None
    if Path(f"{args.root}/valid").is_dir():
        valid_set = datasets.ImageFolder(f"{args.root}/valid", transform=eval_transform(args))
        valid_loader = torch.utils.data.DataLoader(valid_set, batch_size=args.batch_size, num_workers=args.workers)
    model = build_model(args, len(train_set.classes))
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    criterion = nn.CrossEntropyLoss(label_smoothing=args.label_smoothing)
    steps_per_epoch = len(loader)
    print(f"arch={args.arch} fp32 threads={args.threads} workers={args.workers} images={len(train_set)} "
          f"steps_per_epoch={steps_per_epoch}", flush=True)
    step = 0
    for epoch in range(args.epochs):
        model.train()
        loss_sum = 0.0
        seen = 0
        start = time.perf_counter()
        for inputs, labels in loader:
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step, args, steps_per_epoch)
            optimizer.zero_grad()
            loss = criterion(model(inputs), labels)
            loss.backward()
            optimizer.step()
            step += 1
            loss_sum += loss.item() * labels.numel()
            seen += labels.numel()
        seconds = time.perf_counter() - start
        valid = f" valid_accuracy={accuracy_on(model, valid_loader)[0]:.4f}" if valid_loader else ""
        path = out / f"epoch-{epoch:03d}.pt"
        torch.save(model.state_dict(), path)
        print(f"epoch={epoch} saved_at={time.time():.3f} epoch_seconds={seconds:.2f} "
              f"images_per_second={seen / seconds:.1f} train_loss={loss_sum / seen:.4f}{valid} path={path}",
              flush=True)


def evaluate(args):
    torch.set_num_threads(args.threads)
    test_set = datasets.ImageFolder(f"{args.root}/test", transform=eval_transform(args))
    loader = torch.utils.data.DataLoader(test_set, batch_size=256, num_workers=args.workers)
    model = build_model(args, len(test_set.classes))
    for path in args.checkpoints:
        model.load_state_dict(torch.load(path))
        accuracy, seen = accuracy_on(model, loader)
        print(f"path={path} accuracy={accuracy:.6f} samples={seen}", flush=True)


def floats(text):
    values = [float(v) for v in text.split(",")]
    if len(values) != 3:
        raise argparse.ArgumentTypeError(f"{text!r}: give three comma-separated numbers (one per channel)")
    return values


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("train", "evaluate"))
    parser.add_argument("root", help="ImageFolder dataset root (train/ [valid/] test/)")
    parser.add_argument("checkpoints", nargs="*", help="evaluate: the state dicts train saved")
    parser.add_argument("--arch", choices=("resnet18", "mobilenet_v2"), default="resnet18")
    parser.add_argument("--pretrained", default="", help="mobilenet_v2: .safetensors with torchvision names")
    parser.add_argument("--keras-same-padding", action="store_true")
    parser.add_argument("--input-size", type=int, default=28)
    parser.add_argument("--resize", type=int, default=28)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--weight-decay", type=float, default=0.01)
    parser.add_argument("--warmup-epochs", type=float, default=0.0)
    parser.add_argument("--lr-min", type=float, default=0.0)
    parser.add_argument("--label-smoothing", type=float, default=0.0)
    parser.add_argument("--augment-scale", type=float, default=1.0)
    parser.add_argument("--mean", type=floats, default=[0.5] * 3)
    parser.add_argument("--std", type=floats, default=[0.5] * 3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="peer-checkpoints", help="train: folder for the per-epoch state dicts")
    args = parser.parse_args()
    train(args) if args.command == "train" else evaluate(args)


if __name__ == "__main__":
    main()
