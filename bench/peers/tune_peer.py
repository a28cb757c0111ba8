"""Python peer of bench/tune_bench.py: tuning a frozen-backbone classifier the classic PyTorch way.

For each trial (hyperparameters lr and batch_size, read from --trials FILE, a JSON list
of {"index": int, "hyperparameters": {"lr": float, "batch_size": int}}), it trains what
the classic transfer-learning script trains, from scratch:

  torchvision ImageFolder (ROOT/train, ROOT/valid) with the eval transform
  Resize(input_size*256/224) -> CenterCrop(input_size) -> ToTensor -> Normalize(ImageNet),
  no augmentation; DataLoader(batch_size, shuffle for train, num_workers=--threads);
  torchvision.models.<arch>(weights=None) with every parameter frozen
  (requires_grad=False) and in eval mode, fc replaced by a new Linear(in_features,
  num_classes); Adam(fc, lr), cross-entropy; --epochs epochs, each followed by a
  validation pass (top-1 accuracy on valid/).

There is no feature cache: the backbone runs on every batch of every epoch (train and
valid) of every trial, which is the cost Kennel's tuner avoids. torch.set_num_threads(
--threads). A trial is timed from building its model to the end of its last validation
pass (dataset scan, model construction, DataLoader workers started each epoch: all of it).

Prints JSON lines on stdout:
  {"type": "epoch", "index", "epoch", "seconds", "train_seconds", "valid_seconds",
   "train_loss", "train_accuracy", "valid_loss", "valid_accuracy"}
  {"type": "trial", "index", "hyperparameters", "seconds", "setup_seconds", "epochs",
   "epoch_seconds": [...], "valid_accuracy" (last epoch), "best_valid_accuracy"}
  {"type": "summary", "trials", "seconds", "images": {"train", "valid"}, "torch", "torchvision"}
"""
import argparse
import json
import sys
import time

import torch
import torchvision
from torch import nn
from torchvision import datasets, models, transforms


def emit(record):
    print(json.dumps(record), flush=True)


def build_model(arch, num_classes):
    model = getattr(models, arch)(weights=None)
    for parameter in model.parameters():
        parameter.requires_grad = False
    model.fc = nn.Linear(model.fc.in_features, num_classes)  # the only trainable layer
    # The frozen backbone stays in eval mode (BatchNorm uses its running statistics);
    # the head is a Linear, which has no train/eval difference.
    model.eval()
    return model


def run_epoch(model, loader, criterion, optimizer=None):
    """One pass; trains when an optimizer is given. Returns (loss, accuracy, images, seconds)."""
    total_loss, correct, seen = 0.0, 0, 0
    start = time.perf_counter()
    with torch.set_grad_enabled(optimizer is not None):
        for inputs, labels in loader:
            outputs = model(inputs)
            loss = criterion(outputs, labels)
            if optimizer is not None:
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            total_loss += loss.item() * inputs.size(0)
            correct += (outputs.argmax(1) == labels).sum().item()
            seen += inputs.size(0)
    seconds = time.perf_counter() - start
    return total_loss / max(seen, 1), correct / max(seen, 1), seen, seconds


def run_trial(args, trial, transform):
    hyperparameters = trial["hyperparameters"]
    lr = float(hyperparameters["lr"])
    batch_size = int(hyperparameters["batch_size"])
    index = int(trial.get("index", 0))
    start = time.perf_counter()
    torch.manual_seed(args.seed + index)
    train_set = datasets.ImageFolder(f"{args.root}/train", transform=transform)
    valid_set = datasets.ImageFolder(f"{args.root}/valid", transform=transform)
    if valid_set.classes != train_set.classes:
        sys.exit(f"tune_peer: valid/ classes differ from train/ classes under {args.root}")
    train_loader = torch.utils.data.DataLoader(train_set, batch_size=batch_size, shuffle=True,
                                               num_workers=args.threads)
    valid_loader = torch.utils.data.DataLoader(valid_set, batch_size=batch_size, shuffle=False,
                                               num_workers=args.threads)
    model = build_model(args.arch, len(train_set.classes))
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    criterion = nn.CrossEntropyLoss()
    setup_seconds = time.perf_counter() - start

    epoch_seconds, accuracies = [], []
    for epoch in range(args.epochs):
        epoch_start = time.perf_counter()
        train_loss, train_accuracy, _, train_seconds = run_epoch(model, train_loader, criterion, optimizer)
        valid_loss, valid_accuracy, _, valid_seconds = run_epoch(model, valid_loader, criterion)
        seconds = time.perf_counter() - epoch_start
        epoch_seconds.append(seconds)
        accuracies.append(valid_accuracy)
        emit({"type": "epoch", "index": index, "epoch": epoch, "seconds": round(seconds, 4),
              "train_seconds": round(train_seconds, 4), "valid_seconds": round(valid_seconds, 4),
              "train_loss": train_loss, "train_accuracy": train_accuracy,
              "valid_loss": valid_loss, "valid_accuracy": valid_accuracy})
    emit({"type": "trial", "index": index, "hyperparameters": {"lr": lr, "batch_size": batch_size},
          "seconds": round(time.perf_counter() - start, 4), "setup_seconds": round(setup_seconds, 4),
          "epochs": args.epochs, "epoch_seconds": [round(s, 4) for s in epoch_seconds],
          "valid_accuracy": accuracies[-1] if accuracies else None,
          "best_valid_accuracy": max(accuracies) if accuracies else None})
    return len(train_set), len(valid_set)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", help="ImageFolder dataset root (reads ROOT/train and ROOT/valid)")
    parser.add_argument("--trials", required=True,
                        help='JSON file: [{"index": 0, "hyperparameters": {"lr": 0.001, "batch_size": 32}}, ...]')
    parser.add_argument("--limit", type=int, default=0, help="run only the first N trials (0 = all)")
    parser.add_argument("--arch", default="resnet50")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--input-size", type=int, default=224)
    parser.add_argument("--threads", type=int, default=2, help="torch threads and DataLoader workers")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    with open(args.trials) as stream:
        trials = json.load(stream)
    if args.limit > 0:
        trials = trials[:args.limit]
    if not trials:
        sys.exit("tune_peer: no trials to run")

    torch.set_num_threads(args.threads)
    normalize = transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    transform = transforms.Compose([transforms.Resize(args.input_size * 256 // 224),
                                    transforms.CenterCrop(args.input_size),
                                    transforms.ToTensor(), normalize])
    start = time.perf_counter()
    images = (0, 0)
    for trial in trials:
        images = run_trial(args, trial, transform)
    emit({"type": "summary", "trials": len(trials), "seconds": round(time.perf_counter() - start, 4),
          "images": {"train": images[0], "valid": images[1]},
          "torch": torch.__version__, "torchvision": torchvision.__version__})


if __name__ == "__main__":
    main()
