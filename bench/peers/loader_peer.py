"""Python peer of bench/loader_bench.cpp: the classic torchvision input pipeline.

ImageFolder + DataLoader (batch 32, shuffle, N worker processes) with the
eval transform Resize(256) -> CenterCrop(224) -> ToTensor -> Normalize, or the
train transform RandomResizedCrop(224) -> RandomHorizontalFlip -> ToTensor ->
Normalize. Prints `images_per_second=<float>` after one warm-up epoch.
"""
import argparse
import time

import torch
from torchvision import datasets, transforms


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("root")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--augment", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    normalize = transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    if args.augment:
        transform = transforms.Compose([transforms.RandomResizedCrop(224),
                                        transforms.RandomHorizontalFlip(),
                                        transforms.ToTensor(), normalize])
    else:
        transform = transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224),
                                        transforms.ToTensor(), normalize])
    dataset = datasets.ImageFolder(f"{args.root}/train", transform=transform)
    loader = torch.utils.data.DataLoader(dataset, batch_size=32, shuffle=True,
                                         num_workers=args.workers, persistent_workers=True)
    for _ in loader:  # warm-up: page cache, worker start
        pass
    start = time.perf_counter()
    images = 0
    for _ in range(args.epochs):
        for batch, _labels in loader:
            images += batch.shape[0]
    print(f"images_per_second={images / (time.perf_counter() - start):.2f}")


if __name__ == "__main__":
    main()
