"""Machine accounts: fluent model-written posts, some leaking chat boilerplate as real bot networks do."""

from __future__ import annotations

from stream.simulation.network import Network
from stream.simulation.texts import LEAKED_BOILERPLATE, machine_written_texts, topic_words


def machine_accounts(net: Network, n_posts: int) -> None:
    """Add the machine accounts and ``n_posts`` posts among them, at random times."""
    accounts = net.add_accounts([f"bot_{i:03d}" for i in range(net.config.machine_accounts)])
    if not accounts:
        return
    for t in net.times(n_posts):
        topic, w1, w2 = topic_words(net.rng)
        leaked = bool(net.rng.random() < net.config.leak_share)
        pool = LEAKED_BOILERPLATE if leaked else machine_written_texts()
        text = pool[int(net.rng.integers(len(pool)))]
        text = text.format(w1=w1, w2=w2) if leaked else text
        account = accounts[int(net.rng.integers(len(accounts)))]
        post = net.post(account, int(t), text, kind="machine", machine=True, more_truth={"leaked_boilerplate": leaked})
        if net.rng.random() < 0.5:
            post.hashtags = [topic, "inspiration"]
            post.text += " " + " ".join(f"#{h}" for h in post.hashtags)
