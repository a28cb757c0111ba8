"""Python peer of bench/train_bench.py: the classic PyTorch transfer-learning script.

torchvision ImageFolder + DataLoader (batch 32, shuffle, 2 worker processes) with
the eval transform Resize(256) -> CenterCrop(224) -> ToTensor -> Normalize(ImageNet),
a randomly initialised torchvision.models.<arch>() whose fc is replaced by
Linear(in_features, num_classes), Adam (lr 1e-3) and cross-entropy.

Modes (the names of the Kennel side):
  frozen_nocache  backbone frozen (requires_grad=False for everything but fc)
  cached_head     the same as frozen_nocache: the classic script has no feature
                  cache, it re-runs the backbone every epoch (the point of comparison)
  finetune        every parameter trains
  finetune_frozen_bn  every parameter trains, every BatchNorm layer in eval mode (its running
                  statistics, not the batch's: Kennel's --batchnorm frozen)

--best-effort: the same script written the way a performance-minded PyTorch user would on this
CPU: the model and every batch in channels_last memory format, the forward pass and the loss
under torch.autocast("cpu", dtype=torch.bfloat16) where the CPU has native bf16 (flags amx_bf16
or avx512_bf16, the rule of kennel's --precision auto; else fp32), the weights, gradients and
Adam's state staying fp32 (autocast's master weights). Same loader, threads, optimizer and seed.

The first --warmup-epochs epochs (default 1) are not timed, like the Kennel side,
which skips its first epoch. An epoch is timed from the creation of the DataLoader
iterator (the classic script starts its workers there each epoch) to the end of
its last optimizer step; validation is not part of it. Prints one line per epoch
and, last, `images_per_second=<float> epoch_seconds=<float>` (means over the timed epochs).
"""
import argparse
import sys
import time
from pathlib import Path

import torch
from torch import nn
from torchvision import datasets, models, transforms

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from ceiling import native_bf16  # noqa: E402  (bench/ceiling.py: the CPU's flags)

MODES = ("frozen_nocache", "cached_head", "finetune", "finetune_frozen_bn")


def build_model(arch, num_classes, freeze_backbone):
    model = getattr(models, arch)(weights=None)
    if freeze_backbone:
        for parameter in model.parameters():
            parameter.requires_grad = False
    if hasattr(model, "fc"):  # ResNets
        model.fc = nn.Linear(model.fc.in_features, num_classes)  # new layer: trainable
    else:  # MobileNetV2: classifier = [Dropout, Linear]
        model.classifier[-1] = nn.Linear(model.classifier[-1].in_features, num_classes)
    return model


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", help="ImageFolder dataset root (reads ROOT/train)")
    parser.add_argument("--arch", default="resnet18")
    parser.add_argument("--mode", choices=MODES, default="frozen_nocache")
    parser.add_argument("--epochs", type=int, default=2, help="epochs in all, warm-up included")
    parser.add_argument("--warmup-epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--best-effort", action="store_true",
                        help="channels_last + bf16 autocast where the CPU has native bf16 (fp32 master weights)")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    normalize = transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    transform = transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224),
                                    transforms.ToTensor(), normalize])
    dataset = datasets.ImageFolder(f"{args.root}/train", transform=transform)
    loader = torch.utils.data.DataLoader(dataset, batch_size=args.batch_size, shuffle=True,
                                         num_workers=args.workers)

    model = build_model(args.arch, len(dataset.classes), not args.mode.startswith("finetune"))
    use_bf16 = args.best_effort and native_bf16()
    if args.best_effort:
        model = model.to(memory_format=torch.channels_last)
    print(f"mode={args.mode} {'best-effort' if args.best_effort else 'classic'} "
          f"precision={'bf16 autocast' if use_bf16 else 'fp32'} memory_format="
          f"{'channels_last' if args.best_effort else 'contiguous'} threads={args.threads}", flush=True)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(trainable, lr=1e-3)
    criterion = nn.CrossEntropyLoss()

    warmup = min(args.warmup_epochs, max(args.epochs - 1, 0))
    timed_images = 0
    timed_seconds = 0.0
    timed_epochs = 0
    for epoch in range(args.epochs):
        model.train()
        if args.mode == "finetune_frozen_bn":
            for module in model.modules():
                if isinstance(module, nn.BatchNorm2d):
                    module.eval()
        running_loss = 0.0
        running_correct = 0
        seen = 0
        start = time.perf_counter()
        for inputs, labels in loader:
            optimizer.zero_grad()
            if args.best_effort:
                inputs = inputs.contiguous(memory_format=torch.channels_last)
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=use_bf16):
                    outputs = model(inputs)
                    loss = criterion(outputs, labels)
            else:  # the classic script, untouched
                outputs = model(inputs)
                loss = criterion(outputs, labels)
            loss.backward()
            optimizer.step()
            running_loss += loss.item() * inputs.size(0)
            running_correct += (outputs.argmax(1) == labels).sum().item()
            seen += inputs.size(0)
        seconds = time.perf_counter() - start
        print(f"epoch={epoch} epoch_seconds={seconds:.4f} images_per_second={seen / seconds:.2f} "
              f"train_loss={running_loss / seen:.4f} train_accuracy={running_correct / seen:.4f}"
              f"{' (warm-up)' if epoch < warmup else ''}", flush=True)
        if epoch >= warmup:
            timed_images += seen
            timed_seconds += seconds
            timed_epochs += 1
    print(f"images_per_second={timed_images / timed_seconds:.3f} "
          f"epoch_seconds={timed_seconds / timed_epochs:.4f}", flush=True)


if __name__ == "__main__":
    main()
