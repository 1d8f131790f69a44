"""An empty Flower app: what flwr itself costs per round, for `benchmarks/bench_flower.py --figures 4`.

The ServerApp sends one message to each of `num_clients` nodes per round and waits for the replies with fedrec_nb's own
`exchange` (the public Grid API's push and pull, polled every `PULL_INTERVAL`); the ClientApp answers at once and imports
nothing but flwr. Round times go to `output_dir/results.json` as `{"rounds": [{"seconds": ...}, ...]}`, the field a
fedrec_nb run records its rounds' times in."""
import json, time
from pathlib import Path

from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp

client_app = ClientApp()


@client_app.train()
def reply(msg: Message, context: Context) -> Message:
    return Message(RecordDict({"node": ConfigRecord({"round": int(msg.content["config"]["round"])})}), reply_to=msg)


server_app = ServerApp()


@server_app.main()
def main(grid: Grid, context: Context) -> None:
    from fedrec_nb.flower import exchange, wait_for_nodes   # the server side only: the ClientApp stays torch-free
    cfg = context.run_config
    rounds, n, out = int(cfg["rounds"]), int(cfg["num_clients"]), Path(str(cfg["output_dir"]))
    nodes = wait_for_nodes(grid, n, 120)
    seconds = []
    for r in range(rounds):
        t = time.perf_counter()
        msgs = [Message(RecordDict({"config": ConfigRecord({"round": r})}), dst_node_id=k, message_type="train",
                        group_id=str(r)) for k in nodes]
        got = exchange(grid, msgs, 120)
        if len(got) != n or any(m.has_error() for m in got): raise RuntimeError(f"round {r}: {len(got)} of {n} replies")
        seconds.append(time.perf_counter() - t)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(dict(rounds=[dict(seconds=s) for s in seconds], num_clients=n)) + "\n")
