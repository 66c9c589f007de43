"""The methods side by side at one equal budget: train each on the same CIFAR-10 subset, then one
test_eval.py table with the gray baseline.

    python -m studies.methods --data CIFAR10 [--train-images 6400] [--batch-size 64]
        [--epochs 3] [--test-images 2000] [--work studies/results/methods] [--methods gan unet ...]

Every method gets --epochs epochs of --train-images images (the same iterations and images); the
NoGAN staging spends them as 1 epoch of generator pretraining, 1 of discriminator pretraining and
the rest adversarial. The subset is a folder of links (never copies) to the first images of each
class. Runs resume when the script is run again; it prints each command it runs.
"""
import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def method_flags(epochs: int) -> dict:
    """The extra train.py flags of each method, all at the same total number of epochs."""
    return {
        "gan": ["--epochs", str(epochs)],
        "unet": ["--model", "unet", "--epochs", str(epochs)],
        "encoder-decoder": ["--model", "encoder-decoder", "--epochs", str(epochs)],
        "nogan": ["--pretrain-generator-epochs", "1", "--pretrain-discriminator-epochs", "1",
                  "--epochs", str(epochs - 2)],
    }


def make_subset(data: str, folder: str, train_images: int) -> str:
    """folder/train/<class>/ links to the first train_images / 10 images of each class; test/ links
    to the whole test split."""
    classes = sorted(os.listdir(os.path.join(data, "train")))
    per_class = train_images // len(classes)
    for name in classes:
        target = os.path.join(folder, "train", name)
        os.makedirs(target, exist_ok=True)
        for file in sorted(os.listdir(os.path.join(data, "train", name)))[:per_class]:
            link = os.path.join(target, file)
            if not os.path.lexists(link):
                os.symlink(os.path.abspath(os.path.join(data, "train", name, file)), link)
    if not os.path.lexists(os.path.join(folder, "test")):
        os.symlink(os.path.abspath(os.path.join(data, "test")), os.path.join(folder, "test"))
    return folder


def run(command: list[str]) -> float:
    print("$ " + " ".join(command), flush=True)
    start = time.perf_counter()
    subprocess.run(command, cwd=ROOT, check=True)
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.path.join(ROOT, "..", "shared", "data", "cifar10"))
    parser.add_argument("--work", default=os.path.join(ROOT, "studies", "results", "methods"))
    parser.add_argument("--train-images", type=int, default=6400)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=3, help="for every method (NoGAN: at least 3)")
    parser.add_argument("--test-images", type=int, default=2000)
    parser.add_argument("--methods", nargs="+", default=list(method_flags(3)), choices=list(method_flags(3)))
    args = parser.parse_args()
    if "nogan" in args.methods and args.epochs < 3:
        parser.error("NoGAN needs --epochs 3 or more (1 + 1 pretraining + adversarial)")
    subset = make_subset(args.data, os.path.join(args.work, "data"), args.train_images)
    runs = os.path.join(args.work, "runs")
    seconds = {}
    for name in args.methods:
        seconds[name] = run([sys.executable, "train.py", "--dataset", "cifar10", "--dataset-path", subset,
                             "--checkpoints-path", runs, "--name", name, "--batch-size", str(args.batch_size),
                             "--validate", "false", "--log-interval", "20", "--save-interval", "100",
                             "--sample-interval", "100", *method_flags(args.epochs)[name]])
    report = os.path.join(args.work, "methods.json")
    first, *others = args.methods
    run([sys.executable, "test_eval.py", "--checkpoints-path", runs, "--name", first,
         "--compare", *(os.path.join(runs, n) for n in others), "--max-images", str(args.test_images),
         "--json", report])
    with open(report) as f:
        results = json.load(f)
    iterations = {}  # what each run did (pure-gray images are skipped, so epochs can be a batch short)
    for name in args.methods:
        with open(os.path.join(runs, name, "history.jsonl")) as f:
            iterations[name] = max(json.loads(line)["step"] for line in f if line.strip())
    results["budget"] = dict(train_images=args.train_images, batch_size=args.batch_size, epochs=args.epochs,
                             iterations=iterations, train_seconds=seconds)
    with open(report, "w") as f:
        json.dump(results, f, indent=2)
    print("training wall time: " + ", ".join(f"{k} {v / 60:.1f} min" for k, v in seconds.items()))
    print(f"wrote {report}")


if __name__ == "__main__":
    main()
