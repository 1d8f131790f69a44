"""The one way a benchmark writes its figures as JSON (`--json PATH`): the figures with the machine they were measured on.

    from benchjson import add_json_argument, write_json
    add_json_argument(parser); ...; write_json(args.json, dict(rows=[...]))

`machine()` is what every file carries: torch's CPU thread count when written, the CPU's model, core count, torch's and
Python's versions, and the CUDA device when one was used."""
import json, os, platform
from pathlib import Path


def cpu_model() -> str:
    "The CPU's model name (Linux's /proc/cpuinfo), else what platform says."
    try: return next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except (OSError, StopIteration): return platform.processor() or platform.machine()


def machine() -> dict:
    "Where the figures were measured: threads, CPU, cores, torch, Python (and the GPU when CUDA was initialised)."
    import torch
    m = dict(threads=torch.get_num_threads(), cpu=cpu_model(), cores=os.cpu_count(), torch=torch.__version__,
             python=platform.python_version())
    if torch.cuda.is_available() and torch.cuda.is_initialized(): m["gpu"] = torch.cuda.get_device_name()
    return m


def add_json_argument(parser):
    "The `--json PATH` option every benchmark takes."
    parser.add_argument("--json", default=None, metavar="PATH",
                        help="also write the figures as JSON here (with the thread count, CPU and torch's version)")
    return parser


def write_json(path, figures: dict) -> None:
    "Write `figures` and `machine()` to `path` (nothing when `path` is None), through a temporary file."
    if not path: return
    path = Path(path); path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(dict(machine=machine(), **figures), indent=1, default=str) + "\n")
    tmp.replace(path)
